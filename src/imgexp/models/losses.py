"""Losses, built from config with the facts only the data knows (class counts)."""

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from imgexp.errors import ImgexpError


def resolve_class_weights(spec, train_labels: np.ndarray, num_classes: int) -> torch.Tensor | None:
    """None, 'balanced' (sklearn's n / (k * count) on the train split) or one weight per class."""
    if spec in (None, "none"):
        return None
    if spec == "balanced":
        present = np.unique(train_labels)
        w = np.ones(num_classes)
        w[present] = compute_class_weight("balanced", classes=present, y=train_labels)
        return torch.as_tensor(w, dtype=torch.float32)
    weights = list(spec)
    if len(weights) != num_classes:
        raise ImgexpError(f"model.loss.class_weights has {len(weights)} values for "
                          f"{num_classes} classes; give one per class or 'balanced'")
    return torch.as_tensor(weights, dtype=torch.float32)


class CrossEntropyLoss(nn.Module):
    """Cross-entropy on logits; accepts hard labels or soft (mixup) targets."""

    def __init__(self, class_weights=None, label_smoothing: float = 0.0,
                 train_labels: np.ndarray | None = None, num_classes: int = 0):
        super().__init__()
        weight = resolve_class_weights(class_weights, train_labels, num_classes)
        self.register_buffer("weight", weight, persistent=False)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not target.is_floating_point():
            return nn.functional.cross_entropy(logits, target, weight=self.weight,
                                               label_smoothing=self.label_smoothing)
        # soft (mixup) targets: torch averages these over the batch even with class weights;
        # divide by the summed per-sample weight (target . weight) instead, the weighted mean
        # hard labels get, so one-hot targets give exactly the hard-label loss
        total = nn.functional.cross_entropy(logits, target, weight=self.weight,
                                            label_smoothing=self.label_smoothing,
                                            reduction="sum")
        return total / (target.float() @ self.weight).sum() if self.weight is not None \
            else total / len(target)
