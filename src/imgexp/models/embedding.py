"""What an embedding model needs besides its layers: a gallery to vote over, retrieval
metrics, epoch figures of the triplet loss, and the alarm that says when all embeddings
collapsed to one point."""

import logging

import torch
from torch.utils.data import DistributedSampler
from torchmetrics import MetricCollection

from imgexp.errors import ImgexpError
from imgexp.metrics.retrieval import knn_vote, retrieval_metrics

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


def first_occurrences(index: torch.Tensor) -> torch.Tensor:
    """Positions of the first occurrence of each value of `index`, in increasing value."""
    order = torch.argsort(index, stable=True)
    ordered = index[order]
    new = torch.ones_like(ordered, dtype=torch.bool)
    new[1:] = ordered[1:] != ordered[:-1]
    return order[new]


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
        self.reset()
        return means

    def reset(self) -> None:
        self.sums, self.count = {}, 0


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


class EmbeddingEvaluation:
    """The embedding half of ImageClassifier: the gallery (train-split embeddings, buffers in
    the state dict), its k-NN vote, retrieval metrics each validation/test, the collapse alarm.
    Mixed into the LightningModule, so `self` is the module."""

    def knn_proba(self, embeddings: torch.Tensor) -> torch.Tensor:
        if len(self.gallery_labels) == 0:
            raise ImgexpError("this embedding model has no gallery (train embeddings) to vote "
                              "over: its checkpoint was saved before the first validation; "
                              "train at least one epoch with validation")
        return knn_vote(embeddings, self.gallery_embeddings, self.gallery_labels,
                        len(self.class_names), k=self.head.knn_k,
                        weighted=self.head.knn_weighted).to(embeddings.device)

    @torch.no_grad()
    def refresh_gallery(self, loader) -> None:
        """Embed the train split (no augmentation) with the current weights."""
        embeddings, labels = embed_loader(self, loader)
        self.gallery_embeddings = embeddings.to(self.device)
        self.gallery_labels = labels.to(self.device)

    def _embedding_epoch_figures(self) -> None:
        """Log the share of triplets (pairs) still active and the spread; warn on collapse."""
        means = self.epoch_stats.means()
        if not means:
            return
        shown = ("active_triplets", "active_pairs", "embedding_spread")
        self.log_dict({f"train/{key}": means[key] for key in shown if key in means})
        collapse_value = getattr(self.loss_fn, "collapse_value", None)
        if collapse_value is None or "embedding_spread" not in means:
            return
        lr = self.trainer.optimizers[0].param_groups[-1]["lr"] if self._trainer else None
        message = collapse_warning(means["triplet_loss"], means["embedding_spread"],
                                   collapse_value, lr)
        if message:
            log.warning("epoch %d: %s", self.current_epoch, message)

    def _refresh_gallery_from_datamodule(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "gallery_dataloader"):
            raise ImgexpError("an embedding model is evaluated against the train split: run it "
                              "with an imgexp ImageDataModule (datamodule=...)")
        self.refresh_gallery(datamodule.gallery_dataloader())

    def _gathered_outputs(self, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        outputs, self.outputs[stage] = self.outputs[stage], []
        if not outputs:
            return torch.empty(0, self.head.dim, device=self.device), torch.empty(
                0, dtype=torch.long, device=self.device)
        embeddings, labels, index = (torch.cat(parts) for parts in zip(*outputs, strict=True))
        if self.trainer.world_size > 1 and self._sharded_eval(stage):
            embeddings, labels, index = (self.all_gather(t).flatten(0, 1)
                                         for t in (embeddings, labels, index))
            # DistributedSampler pads the last ranks with repeats of the first images: each
            # image once, in dataset order, as one process sees them
            keep = first_occurrences(index)
            embeddings, labels = embeddings[keep], labels[keep]
        return embeddings, labels

    def _sharded_eval(self, stage: str) -> bool:
        loaders = self.trainer.val_dataloaders if stage == "val" else self.trainer.test_dataloaders
        return isinstance(getattr(loaders, "sampler", None), DistributedSampler)

    def _retrieval_epoch_end(self, stage: str, metrics: MetricCollection) -> dict:
        """k-NN accuracy, precision@1, R-precision, MAP@R of `stage` (queries) vs the gallery."""
        embeddings, labels = self._gathered_outputs(stage)
        if len(labels) == 0:
            return {}
        figures = retrieval_metrics(embeddings.cpu(), labels.cpu(), self.gallery_embeddings.cpu(),
                                    self.gallery_labels.cpu(), vote_k=self.head.knn_k,
                                    weighted=self.head.knn_weighted)
        if figures["n_queries_without_gallery_class"]:
            log.warning("%s: %d of %d images belong to classes absent from the train split; "
                        "precision@1 and MAP@R leave them out, knn_acc counts them as wrong",
                        stage, figures["n_queries_without_gallery_class"], figures["n_queries"])
        metrics.update(self.knn_proba(embeddings), labels)
        values = {f"{stage}/{key}": float(figures[key]) for key in
                  ("knn_acc", "precision_at_1", "r_precision", "map_at_r",
                   "n_queries_without_gallery_class")}
        self.log_dict(values, sync_dist=False)
        return values

    def _embedding_validation_end(self) -> None:
        if self.trainer.sanity_checking:
            self.outputs["val"].clear()
            return
        self._refresh_gallery_from_datamodule()
        values = self._retrieval_epoch_end("val", self.val_metrics)
        classification = self.val_metrics.compute()
        self.val_metrics.reset()
        if not values:
            return
        self.val_acc_best.update(classification["val/acc"])
        self.val_p1_best.update(values["val/precision_at_1"])
        self.log_dict(classification, prog_bar=True)
        self.log("val/acc_best", self.val_acc_best.compute())
        self.log("val/precision_at_1_best", self.val_p1_best.compute())

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the gallery's size is only known from the checkpoint: take its shape before loading
        if self.is_embedding:
            for name in ("gallery_embeddings", "gallery_labels"):
                if prefix + name in state_dict:
                    setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
