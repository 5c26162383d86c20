"""Heads map backbone features to what the loss consumes."""

import torch
from torch import nn


class SoftmaxHead(nn.Module):
    """Dropout + linear to class logits."""

    kind = "classifier"

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(features))
