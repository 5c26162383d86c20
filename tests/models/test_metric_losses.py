"""Triplet losses against brute-force references, the embedding head's input checks and the
collapse alarm."""

import itertools
import math

import pytest
import torch

from imgexp.errors import ImgexpError
from imgexp.models.embedding import collapse_warning
from imgexp.models.heads import EmbeddingHead
from imgexp.models.metric_losses import CrossEntropyTripletLoss, TripletLoss


def random_batch(n=24, classes=5, dim=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    emb = torch.nn.functional.normalize(torch.randn(n, dim, generator=gen), dim=1)
    labels = torch.randint(0, classes, (n,), generator=gen)
    labels[:2] = torch.tensor([0, 0])  # at least one positive pair
    labels[-1] = classes  # a class with a single image: an anchor without positive
    return emb, labels


def batch_hard_reference(emb, labels, margin, soft):
    """Hermans et al. 2017, by loops: mean over anchors that have a positive and a negative."""
    d = torch.cdist(emb, emb)
    losses = []
    for a in range(len(labels)):
        pos = [d[a, p] for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        neg = [d[a, n] for n in range(len(labels)) if labels[n] != labels[a]]
        if not pos or not neg:
            continue
        gap = max(pos) - min(neg)
        losses.append(torch.nn.functional.softplus(gap) if soft else torch.relu(gap + margin))
    return torch.stack(losses).mean()


def batch_all_reference(emb, labels, margin):
    """Every valid triplet; mean over the non-zero ones."""
    d = torch.cdist(emb, emb)
    values = [torch.relu(d[a, p] - d[a, n] + margin)
              for a, p, n in itertools.product(range(len(labels)), repeat=3)
              if a != p and labels[a] == labels[p] and labels[a] != labels[n]]
    values = torch.stack(values)
    return values[values > 0].mean(), (values > 0).float().mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("soft", [False, True])
def test_batch_hard_equals_brute_force(seed, soft):
    emb, labels = random_batch(seed=seed)
    loss = TripletLoss(margin=0.3, mining="batch_hard", soft_margin=soft)(emb, labels)
    ref = batch_hard_reference(emb, labels, margin=0.3, soft=soft)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-6)


def test_batch_all_equals_brute_force_and_reports_active_share():
    emb, labels = random_batch(seed=4)
    loss_fn = TripletLoss(margin=0.2, mining="all")
    loss = loss_fn(emb, labels)
    ref, active = batch_all_reference(emb, labels, 0.2)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert loss_fn.last_stats["active_triplets"] == pytest.approx(active.item(), abs=1e-6)
    assert 0 < loss_fn.last_stats["active_triplets"] < 1


def test_semihard_mining_keeps_only_semihard_triplets():
    emb, labels = random_batch(n=32, seed=5)
    loss_fn = TripletLoss(margin=0.2, mining="semihard")
    a, p, n = loss_fn.triplets(emb, labels)
    d = torch.cdist(emb, emb)
    assert len(a) > 0
    assert torch.all(d[a, n] > d[a, p] - 1e-6)
    assert torch.all(d[a, n] < d[a, p] + 0.2 + 1e-6)


def test_gradients_flow_and_loss_drops_when_classes_separate():
    emb, labels = random_batch(seed=6)
    emb = emb.clone().requires_grad_(True)
    loss = TripletLoss(margin=0.2, mining="batch_hard")(emb, labels)
    loss.backward()
    assert emb.grad.abs().sum() > 0
    centres = torch.nn.functional.normalize(torch.eye(8)[labels % 8], dim=1)
    separated = TripletLoss(margin=0.2, mining="batch_hard")(centres, labels)
    assert separated.item() == 0.0


@pytest.mark.parametrize("soft,expected", [(False, 0.25), (True, math.log(2))])
def test_collapsed_embeddings_sit_at_the_collapse_value_and_raise_the_alarm(soft, expected):
    labels = torch.arange(16) % 4
    collapsed = torch.nn.functional.normalize(torch.ones(16, 8), dim=1)
    loss_fn = TripletLoss(margin=0.25, mining="batch_hard", soft_margin=soft)
    loss = loss_fn(collapsed, labels)
    assert loss.item() == pytest.approx(expected, abs=1e-4)
    assert loss_fn.collapse_value == pytest.approx(expected)
    stats = loss_fn.last_stats
    assert stats["embedding_spread"] < 1e-6
    message = collapse_warning(loss.item(), stats["embedding_spread"], loss_fn.collapse_value,
                               lr=0.1)
    assert message and "Lower optimizer.lr" in message and "pretrained" in message


def test_no_alarm_for_a_healthy_batch():
    emb, labels = random_batch(seed=7)
    loss_fn = TripletLoss(margin=0.2, mining="batch_hard")
    loss = loss_fn(emb, labels)
    assert loss_fn.last_stats["embedding_spread"] > 0.5
    assert collapse_warning(loss.item(), loss_fn.last_stats["embedding_spread"], 0.2) is None
    # loss at the margin but embeddings spread: not a collapse
    assert collapse_warning(0.2, 0.8, 0.2) is None


def test_ce_plus_triplet_is_the_sum_of_its_parts():
    emb, labels = random_batch(seed=8)
    loss_fn = CrossEntropyTripletLoss(embedding_dim=8, weight=0.5, num_classes=6,
                                      triplet={"margin": 0.2, "mining": "batch_hard"})
    total = loss_fn(emb, labels)
    ce = torch.nn.functional.cross_entropy(loss_fn.logits(emb), labels)
    triplet = batch_hard_reference(emb, labels, 0.2, soft=False)
    assert total.item() == pytest.approx(ce.item() + 0.5 * triplet.item(), rel=1e-5)
    assert loss_fn.collapse_value == 0.2


def test_bad_loss_options_are_one_line_errors():
    with pytest.raises(ImgexpError, match="mining"):
        TripletLoss(mining="hardest")
    with pytest.raises(ImgexpError, match="margin"):
        TripletLoss(margin=0.0)
    TripletLoss(margin=0.0, soft_margin=True)  # the soft margin has no margin


def test_embedding_head_dim():
    with pytest.raises(ImgexpError, match="model.head.dim=0"):
        EmbeddingHead(in_features=32, num_classes=3, dim=0)
    head = EmbeddingHead(in_features=16, num_classes=3, dim=64)  # wider than the features
    out = head.train()(torch.randn(5, 16))
    assert out.shape == (5, 64)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(5))
