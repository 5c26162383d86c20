"""Triplet losses on L2-normalised embeddings (pytorch-metric-learning), with the per-batch
figures the collapse alarm needs.

Distances are Euclidean between normalised embeddings (pml's LpDistance), so they lie in
[0, 2] and a margin of 0.2-0.5 is the usual range.
"""

import math

import numpy as np
import torch
from pytorch_metric_learning import losses, miners, reducers
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu
from torch import nn

from imgexp.errors import ImgexpError

MINING = ("all", "semihard", "batch_hard")


class TripletLoss(nn.Module):
    """Margin triplet loss over in-batch triplets chosen by `mining`.

    - all: every valid (anchor, positive, negative) triplet, averaged over the non-zero ones
      (Hermans et al.'s "batch all").
    - semihard: negatives farther than the positive but within the margin (FaceNet).
    - batch_hard: for each anchor its hardest positive and hardest negative, averaged over
      all anchors (Hermans et al. 2017).
    soft_margin replaces relu(d_ap - d_an + margin) by softplus(d_ap - d_an) (no margin).
    """

    def __init__(self, margin: float = 0.2, mining: str = "all", soft_margin: bool = False,
                 train_labels: np.ndarray | None = None, num_classes: int = 0):
        super().__init__()
        if mining not in MINING:
            raise ImgexpError(f"model.loss.mining={mining!r} is not an option: use one of {MINING}")
        if not soft_margin and margin <= 0:
            raise ImgexpError(f"model.loss.margin={margin}: a margin triplet loss needs "
                              "margin > 0 (or model.loss.soft_margin=true)")
        self.margin = 0.0 if soft_margin else float(margin)
        self.soft_margin, self.mining = soft_margin, mining
        reducer = reducers.MeanReducer() if mining == "batch_hard" else reducers.AvgNonZeroReducer()
        self.loss = losses.TripletMarginLoss(margin=self.margin, smooth_loss=soft_margin,
                                             reducer=reducer)
        self.miner = {"all": None,
                      "semihard": miners.TripletMarginMiner(margin=self.margin or 0.2,
                                                            type_of_triplets="semihard"),
                      "batch_hard": miners.BatchHardMiner()}[mining]
        self.last_stats: dict[str, float] = {}

    @property
    def collapse_value(self) -> float:
        """The loss when every embedding sits on one point (d_ap = d_an = 0)."""
        return math.log(2) if self.soft_margin else self.margin

    def triplets(self, embeddings: torch.Tensor, labels: torch.Tensor):
        if self.miner is None:
            return lmu.get_all_triplets_indices(labels)
        return self.miner(embeddings, labels)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        anchors, positives, negatives = self.triplets(embeddings, labels)
        loss = self.loss(embeddings, labels, (anchors, positives, negatives))
        self.last_stats = self._stats(embeddings.detach(), anchors, positives, negatives)
        return loss

    def _stats(self, embeddings, anchors, positives, negatives) -> dict[str, float]:
        """Fraction of triplets still violating the margin, and how spread the batch is."""
        spread = (embeddings - embeddings.mean(0)).norm(dim=1).mean().item()
        if len(anchors) == 0:
            return {"active_triplets": 0.0, "embedding_spread": spread, "triplets": 0}
        d_ap = (embeddings[anchors] - embeddings[positives]).norm(dim=1)
        d_an = (embeddings[anchors] - embeddings[negatives]).norm(dim=1)
        active = (d_ap - d_an + self.margin > 0).float().mean().item()
        return {"active_triplets": active, "embedding_spread": spread, "triplets": len(anchors)}


class CrossEntropyTripletLoss(nn.Module):
    """cross_entropy + weight x triplet: a cosine softmax classifier over the same embedding
    (logits = scale x cos(embedding, class weight)) steadies the start of triplet training."""

    def __init__(self, embedding_dim: int, triplet: dict | None = None, weight: float = 1.0,
                 scale: float = 16.0, label_smoothing: float = 0.0,
                 train_labels: np.ndarray | None = None, num_classes: int = 0):
        super().__init__()
        self.triplet = TripletLoss(**(triplet or {}))
        self.classifier = nn.Linear(int(embedding_dim), num_classes, bias=False)
        self.weight, self.scale, self.label_smoothing = weight, scale, label_smoothing
        self.last_stats: dict[str, float] = {}

    @property
    def collapse_value(self) -> float:
        return self.triplet.collapse_value

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.scale * embeddings @ nn.functional.normalize(self.classifier.weight, dim=1).T

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        triplet = self.triplet(embeddings, labels)
        ce = nn.functional.cross_entropy(self.logits(embeddings), labels,
                                         label_smoothing=self.label_smoothing)
        self.last_stats = {**self.triplet.last_stats, "triplet_loss": triplet.item(),
                           "ce_loss": ce.item()}
        return ce + self.weight * triplet


class ContrastiveLoss(nn.Module):
    """The Siamese network's pairwise loss (Hadsell et al. 2006, pml's ContrastiveLoss) over
    the pairs of a P x K batch: relu(d - pos_margin) for same-class pairs, relu(neg_margin - d)
    for different-class pairs, each averaged over its non-zero terms.

    mining: all (every in-batch pair) | hard (only the pairs breaking their margin, pml's
    PairMarginMiner: the easy ones no longer dilute the average).
    """

    def __init__(self, pos_margin: float = 0.0, neg_margin: float = 1.0, mining: str = "all",
                 train_labels: np.ndarray | None = None, num_classes: int = 0):
        super().__init__()
        if mining not in ("all", "hard"):
            raise ImgexpError(f"model.loss.mining={mining!r} is not an option: use all or hard")
        if not 0 <= pos_margin < neg_margin:
            raise ImgexpError(f"model.loss.pos_margin={pos_margin} / neg_margin={neg_margin}: "
                              "need 0 <= pos_margin < neg_margin (distances lie in [0, 2])")
        self.pos_margin, self.neg_margin, self.mining = float(pos_margin), float(neg_margin), mining
        self.loss = losses.ContrastiveLoss(pos_margin=self.pos_margin, neg_margin=self.neg_margin)
        self.miner = miners.PairMarginMiner(pos_margin=self.pos_margin,
                                            neg_margin=self.neg_margin) if mining == "hard" \
            else None
        self.last_stats: dict[str, float] = {}

    @property
    def collapse_value(self) -> float:
        """Every embedding on one point: d = 0, so each negative pair costs neg_margin."""
        return self.neg_margin

    def pairs(self, embeddings: torch.Tensor, labels: torch.Tensor):
        if self.miner is None:
            return lmu.get_all_pairs_indices(labels)
        return self.miner(embeddings, labels)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pairs = self.pairs(embeddings, labels)
        loss = self.loss(embeddings, labels, pairs)
        self.last_stats = self._stats(embeddings.detach(), *pairs)
        return loss

    def _stats(self, embeddings, a1, p, a2, n) -> dict[str, float]:
        """Share of pairs still breaking their margin, and how spread the batch is."""
        spread = (embeddings - embeddings.mean(0)).norm(dim=1).mean().item()
        d_pos = (embeddings[a1] - embeddings[p]).norm(dim=1)
        d_neg = (embeddings[a2] - embeddings[n]).norm(dim=1)
        active = torch.cat([d_pos > self.pos_margin, d_neg < self.neg_margin]).float()
        return {"active_pairs": active.mean().item() if len(active) else 0.0,
                "embedding_spread": spread, "pairs": len(active)}
