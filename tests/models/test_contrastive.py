"""model/loss=contrastive: the Siamese pairs loss, its margins and mining, and what a short
run does to same- and different-class distances."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from imgexp.errors import ImgexpError
from imgexp.models.metric_losses import ContrastiveLoss


def direct_loss(emb, labels, pos_margin, neg_margin) -> float:
    """The formula over every pair i < j: each part averaged over its non-zero terms."""
    d = torch.cdist(emb.double(), emb.double())
    i, j = np.triu_indices(len(labels), 1)
    same = (labels[i] == labels[j]).numpy()
    pos = torch.relu(d[i[same], j[same]] - pos_margin)
    neg = torch.relu(neg_margin - d[i[~same], j[~same]])
    mean_nonzero = lambda x: x[x > 0].mean().item() if (x > 0).any() else 0.0  # noqa: E731
    return mean_nonzero(pos) + mean_nonzero(neg)


def batch(seed=0):
    torch.manual_seed(seed)
    emb = nn.functional.normalize(torch.randn(16, 8), dim=1)
    return emb, torch.arange(4).repeat_interleave(4)


@pytest.mark.parametrize("pos_margin,neg_margin", [(0.0, 1.0), (0.3, 1.0), (0.0, 1.6)])
def test_margins_are_the_formulas(pos_margin, neg_margin):
    emb, labels = batch()
    loss = ContrastiveLoss(pos_margin=pos_margin, neg_margin=neg_margin)(emb, labels)
    assert loss.item() == pytest.approx(direct_loss(emb, labels, pos_margin, neg_margin),
                                        rel=1e-4)


def test_hard_mining_keeps_only_the_pairs_breaking_their_margin():
    emb, labels = batch()
    every = ContrastiveLoss(neg_margin=1.2)
    hard = ContrastiveLoss(neg_margin=1.2, mining="hard")
    every(emb, labels)
    hard(emb, labels)
    assert every.last_stats["pairs"] == 16 * 15  # ordered pairs, as pml counts them
    assert 0 < hard.last_stats["pairs"] < every.last_stats["pairs"]
    assert hard.last_stats["active_pairs"] == 1.0 > every.last_stats["active_pairs"]


def test_collapse_value_is_the_negative_margin():
    labels = torch.arange(4).repeat_interleave(4)
    collapsed = nn.functional.normalize(torch.ones(16, 8), dim=1)
    loss = ContrastiveLoss(neg_margin=0.8)
    assert loss(collapsed, labels).item() == pytest.approx(loss.collapse_value) == 0.8


@pytest.mark.parametrize("kwargs", [{"pos_margin": 1.0, "neg_margin": 0.5},
                                    {"pos_margin": -0.1}, {"mining": "semihard"}])
def test_bad_settings_are_one_line_errors(kwargs):
    with pytest.raises(ImgexpError, match="model.loss"):
        ContrastiveLoss(**kwargs)


def mean_distances(net, x, y) -> tuple[float, float]:
    with torch.no_grad():
        emb = nn.functional.normalize(net(x), dim=1)
    d = torch.cdist(emb, emb)
    same = y[:, None] == y[None, :]
    off_diagonal = ~torch.eye(len(y), dtype=torch.bool)
    return d[same & off_diagonal].mean().item(), d[~same].mean().item()


@pytest.mark.slow  # ~5 s alone; minutes on a loaded machine
def test_short_run_brings_same_class_pairs_closer_than_different_class_pairs():
    digits = load_digits()
    x = torch.tensor(digits.data / 16, dtype=torch.float32)
    y = torch.tensor(digits.target)
    held_out = torch.arange(len(y)) % 5 == 0  # distances measured on images never trained on
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 16))
    same_before, diff_before = mean_distances(net, x[held_out], y[held_out])
    loss_fn = ContrastiveLoss(pos_margin=0.0, neg_margin=1.0)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    train_x, train_y = x[~held_out], y[~held_out]
    generator = torch.Generator().manual_seed(0)
    for _ in range(100):  # P x K batches: 8 classes x 8 images
        classes = torch.randperm(10, generator=generator)[:8]
        idx = torch.cat([torch.nonzero(train_y == c)[:, 0][
            torch.randperm(int((train_y == c).sum()), generator=generator)[:8]] for c in classes])
        loss = loss_fn(nn.functional.normalize(net(train_x[idx]), dim=1), train_y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    same_after, diff_after = mean_distances(net, x[held_out], y[held_out])
    assert same_after < 0.6 * diff_after
    # closer than at init relative to the other pairs: a random network maps every image near
    # one point (all distances small), so training spreads them all; the gap is the effect
    assert same_before / diff_before > 0.7
    assert same_after / diff_after < 0.7 * (same_before / diff_before)
