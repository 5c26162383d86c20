"""Heads map backbone features to what the loss consumes."""

import torch
from torch import nn

from imgexp.errors import ImgexpError


def _check_knn_k(knn_k) -> None:
    if int(knn_k) < 1:
        raise ImgexpError(f"model.head.knn_k={knn_k}: the k-NN vote needs k >= 1")


class SoftmaxHead(nn.Module):
    """Dropout + linear to class logits."""

    kind = "classifier"

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(features))


class EmbeddingHead(nn.Module):
    """Linear projection to `dim` (+ optional BatchNorm), L2-normalised: metric-learning output.

    The model classifies by a k-NN vote (knn_k neighbours, distance-weighted if knn_weighted)
    over the train-split embeddings it keeps as its gallery; see ImageClassifier.
    """

    kind = "embedding"

    def __init__(self, in_features: int, num_classes: int, dim: int = 128,
                 batch_norm: bool = True, dropout: float = 0.0, knn_k: int = 5,
                 knn_weighted: bool = True):
        super().__init__()
        if int(dim) < 1:
            raise ImgexpError(f"model.head.dim={dim}: the embedding needs at least one "
                              "dimension (128 is the usual choice)")
        _check_knn_k(knn_k)
        self.dim, self.num_classes = int(dim), num_classes
        self.knn_k, self.knn_weighted = int(knn_k), knn_weighted
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(in_features, self.dim)
        self.bn = nn.BatchNorm1d(self.dim) if batch_norm else nn.Identity()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.bn(self.proj(self.dropout(features))), dim=-1)


class KnnHead(nn.Module):
    """The backbone's features themselves, L2-normalised: a k-NN classifier with nothing to
    learn (the CBIR seed's descriptors + weighted vote). Same vote and gallery as
    EmbeddingHead; over a trainable backbone a metric loss trains the backbone directly."""

    kind = "embedding"

    def __init__(self, in_features: int, num_classes: int, knn_k: int = 5,
                 knn_weighted: bool = True):
        super().__init__()
        _check_knn_k(knn_k)
        self.dim, self.num_classes = int(in_features), num_classes
        self.knn_k, self.knn_weighted = int(knn_k), knn_weighted

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(features.float(), dim=-1)
