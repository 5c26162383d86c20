"""What an embedding model needs besides its layers: a gallery to vote over, epoch figures
of the triplet loss, and the alarm that says when all embeddings collapsed to one point."""

import logging

import torch

log = logging.getLogger(__name__)


@torch.no_grad()
def embed_loader(module, loader) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, dim) embeddings and (N,) labels of every readable image of a loader, on CPU."""
    embeddings, labels = [], []
    for batch in loader:
        if batch["label"].numel() == 0:
            continue
        embeddings.append(module.embed(batch["image"].to(module.device)).float().cpu())
        labels.append(batch["label"].cpu())
    if not embeddings:
        return torch.empty(0, module.head.dim), torch.empty(0, dtype=torch.long)
    return torch.cat(embeddings), torch.cat(labels)


class EpochStats:
    """Running means of the loss's per-batch figures over one training epoch."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, stats: dict[str, float]) -> None:
        for key, value in stats.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.count += 1

    def means(self) -> dict[str, float]:
        means = {key: value / self.count for key, value in self.sums.items()} if self.count else {}
        self.sums, self.count = {}, 0
        return means


def collapse_warning(triplet_loss: float, spread: float, collapse_value: float,
                     lr: float | None = None, tolerance: float = 0.02,
                     min_spread: float = 0.05) -> str | None:
    """A message when the triplet loss sits at its collapse value (the margin, or ln 2 with
    the soft margin) while the embeddings barely spread: every d_ap = d_an = 0."""
    if abs(triplet_loss - collapse_value) > tolerance * max(collapse_value, 0.1):
        return None
    if spread > min_spread:
        return None
    return (f"embedding collapse: triplet loss {triplet_loss:.4f} sits at its collapse value "
            f"{collapse_value:.4f} and the embeddings spread only {spread:.4f} around their "
            f"mean (all images map to one point). Lower optimizer.lr (now {lr}), check the "
            "pretrained weights (model.backbone.pretrained / checkpoint_path), or start with "
            "model/loss=ce_triplet or mining=semihard")
