"""One LightningModule for every composition of backbone + head + loss.

Inputs are uint8 NCHW batches; normalisation lives here so a checkpoint alone says how to
feed the model (eval, predict, explain and the app need nothing else).

An embedding head (head.kind == "embedding") classifies by a k-NN vote over its gallery:
the train split's embeddings, refreshed at every validation and saved as buffers in the
state dict, so a checkpoint alone classifies too.
"""

import logging

import lightning as L
import torch
from torch import nn
from torchmetrics import MaxMetric, MeanMetric, Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from imgexp.errors import ImgexpError
from imgexp.models.embedding import EmbeddingEvaluation, EpochStats

log = logging.getLogger(__name__)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def classification_metrics(num_classes: int, prefix: str) -> MetricCollection:
    return MetricCollection({
        "acc": MulticlassAccuracy(num_classes, average="micro"),
        "f1_macro": MulticlassF1Score(num_classes, average="macro"),
    }, prefix=prefix)


class ImageClassifier(EmbeddingEvaluation, L.LightningModule):
    def __init__(self, backbone: nn.Module, head: nn.Module, loss: nn.Module,
                 optimizer=None, scheduler=None, class_names=(), mean=IMAGENET_MEAN,
                 std=IMAGENET_STD, channels_last: bool = False, mixup=None,
                 config: dict | None = None):
        super().__init__()
        self.backbone, self.head, self.loss_fn = backbone, head, loss
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.class_names = list(class_names)
        self.channels_last = channels_last
        if channels_last:  # the speed-up needs the weights in the same layout as the input
            self.backbone.to(memory_format=torch.channels_last)
        self.mixup = mixup
        self.config = config or {}
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255, persistent=False)
        n = len(self.class_names)
        self.train_loss = MeanMetric()  # a metric, not Lightning's mean: it can be checkpointed
        self.train_metrics = classification_metrics(n, "train/")
        self.val_metrics = classification_metrics(n, "val/")
        self.test_metrics = classification_metrics(n, "test/")
        self.val_acc_best = MaxMetric()
        self.skipped: set[str] = set()
        self.wandb_run_id: str | None = None
        # (name, params, lr factor) set by a callback (progressive unfreezing) before the
        # optimizer exists; None = one group of every trainable parameter
        self.lr_groups: list[tuple[str, list[nn.Parameter], float]] | None = None
        self.is_embedding = getattr(head, "kind", "classifier") == "embedding"
        # nothing to learn (descriptors + k-NN head): fitting is building the gallery
        self.gallery_only = self.is_embedding and not any(
            p.requires_grad for p in (*backbone.parameters(), *head.parameters()))
        if self.is_embedding:
            self.register_buffer("gallery_embeddings", torch.empty(0, head.dim))
            self.register_buffer("gallery_labels", torch.empty(0, dtype=torch.long))
            self.val_p1_best = MaxMetric()
            self.epoch_stats = EpochStats()
            self.outputs: dict[str, list] = {"val": [], "test": []}
        # recomputed from the weights at every validation, never averaged (callbacks.ema)
        self.recomputed_buffers = ("gallery_embeddings", "gallery_labels") if self.is_embedding \
            else ()

    # -- inference ---------------------------------------------------------------------------
    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features of uint8 images."""
        return self.backbone(self.preprocess(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Head output (logits for a softmax head) of uint8 images."""
        return self.head(self.features(images))

    @torch.inference_mode()
    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        """(N, num_classes) class probabilities of uint8 images, whatever the head.

        The one prediction rule shared by eval, predict, explain and the app: softmax of the
        logits, or the distance-weighted k-NN vote over the gallery for an embedding head.
        """
        if self.is_embedding:
            return self.knn_proba(self.embed(images))
        return torch.softmax(self(images), dim=-1)

    @torch.inference_mode()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised vectors for similarity: the embedding head's output, or the
        penultimate features for a softmax head."""
        out = self(images) if self.is_embedding else self.features(images)
        return nn.functional.normalize(out.float(), dim=-1)

    # -- steps -------------------------------------------------------------------------------
    def _note_skipped(self, batch: dict) -> None:
        for entry in batch.get("skipped", ()):
            if entry not in self.skipped:
                self.skipped.add(entry)
                log.warning("skipping unreadable image %s", entry)

    def _check_finite(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            lr = self.trainer.optimizers[0].param_groups[0]["lr"] if self._trainer else None
            raise ImgexpError(
                f"loss is {loss.item()} at step {self.global_step} (epoch {self.current_epoch}): "
                f"the learning rate is probably too high (current lr={lr}) or the inputs hold "
                "NaN/inf; lower optimizer.lr, set trainer.gradient_clip_val=1.0, or check the data")

    def training_step(self, batch: dict, batch_idx: int):
        self._note_skipped(batch)
        y = batch["label"]
        if y.numel() == 0 or self.gallery_only:
            return None
        x = self.preprocess(batch["image"])
        if self.mixup is not None and len(y) % 2 == 0:
            x, soft = self.mixup(x, y)
            logits = self.head(self.backbone(x))
            loss = self.loss_fn(logits, soft)  # with its class weights and label smoothing
        else:
            logits = self.head(self.backbone(x))
            loss = self.loss_fn(logits, y)
        self._check_finite(loss)
        if self.is_embedding:
            stats = getattr(self.loss_fn, "last_stats", {})
            self.epoch_stats.add({"triplet_loss": loss.item(), **stats})
        else:
            self.train_metrics.update(logits.detach(), y)
        self.train_loss(loss.detach(), len(y))  # batch mean, weighted by the batch size
        self.log("train/loss", self.train_loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def on_train_epoch_start(self) -> None:
        # a fresh epoch (Lightning skips this hook when it resumes into the middle of one): a
        # checkpoint saved after the last batch held that whole epoch's figures
        for metric in self._train_accumulators().values():
            metric.reset()
        if self.is_embedding:
            self.epoch_stats.reset()

    def on_train_epoch_end(self) -> None:
        if self.is_embedding:
            self._embedding_epoch_figures()
            return
        self.log_dict(self.train_metrics.compute())
        self.train_metrics.reset()

    def _eval_step(self, batch: dict, metrics: MetricCollection, stage: str) -> None:
        self._note_skipped(batch)
        y = batch["label"]
        if y.numel() == 0:
            return
        if self.is_embedding:
            self.outputs[stage].append((self(batch["image"]).float(), y, batch["index"]))
            return
        logits = self(batch["image"])
        metrics.update(logits, y)
        self.log(f"{stage}/loss", self.loss_fn(logits, y), on_epoch=True, batch_size=len(y))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, "val")

    def on_validation_epoch_end(self) -> None:
        if self.is_embedding:
            self._embedding_validation_end()
            return
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        if self.trainer.sanity_checking:  # a couple of batches of an untrained model
            return
        self.val_acc_best.update(values["val/acc"])
        self.log_dict(values, prog_bar=True)
        self.log("val/acc_best", self.val_acc_best.compute())

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics, "test")

    def on_test_epoch_start(self) -> None:
        if self.is_embedding and len(self.gallery_labels) == 0:
            self._refresh_gallery_from_datamodule()

    def on_test_epoch_end(self) -> None:
        if self.is_embedding:
            self._retrieval_epoch_end("test", self.test_metrics)
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()

    # -- optimisation ------------------------------------------------------------------------
    def param_groups(self) -> list[dict]:
        if self.lr_groups is None:
            return [{"params": [p for p in self.parameters() if p.requires_grad]}]
        base_lr = getattr(self.optimizer_factory, "keywords", {}).get("lr")
        if base_lr is None:
            raise ImgexpError("per-group learning rates need optimizer.lr to be set")
        return [{"params": params, "lr": base_lr * factor, "name": name}
                for name, params, factor in self.lr_groups]

    def configure_optimizers(self):
        if self.gallery_only:
            return None
        if self.optimizer_factory is None:
            raise ImgexpError("no optimizer configured: choose one with optimizer=adam|adamw|sgd")
        optimizer = self.optimizer_factory(params=self.param_groups())
        if self.scheduler_factory is None:
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer=optimizer, total_steps=total)
        self._fit_resumed_schedule(scheduler)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- checkpoint contract -----------------------------------------------------------------
    def best_metrics(self) -> dict[str, MaxMetric]:
        best = {"val/acc_best": self.val_acc_best}
        if self.is_embedding:
            best["val/precision_at_1_best"] = self.val_p1_best
        return best

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # the best values so far travel in the checkpoint (torchmetrics states are not in the
        # state_dict), so a resumed run keeps its val/*_best instead of restarting it
        best = {name: float(metric.max_value) for name, metric in self.best_metrics().items()
                if metric.update_count}
        checkpoint["imgexp"] = {"class_names": self.class_names, "config": self.config,
                                "wandb_run_id": self.wandb_run_id,
                                "skipped": sorted(self.skipped), "best": best,
                                "train_epoch_so_far": self._train_epoch_so_far()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        meta = checkpoint.get("imgexp", {})
        self.skipped.update(meta.get("skipped", ()))
        best = self.best_metrics()
        for name, value in meta.get("best", {}).items():
            if name in best:
                best[name].update(torch.tensor(value, device=self.device))
        self._restore_train_epoch_so_far(meta.get("train_epoch_so_far"))
        # Lightning restores the scheduler after configure_optimizers; keep a handle to adapt it
        self._resumed_checkpoint = checkpoint

    def _train_accumulators(self) -> dict[str, Metric]:
        return {"loss": self.train_loss, **{f"metrics.{name}": metric for name, metric
                                            in self.train_metrics.items(keep_base=True)}}

    def _train_epoch_so_far(self) -> dict:
        """What the current epoch's train figures have accumulated: a checkpoint saved
        mid-epoch (callbacks.last_checkpoint.every_n_train_steps) resumes into an epoch whose
        train/* means still cover all of its batches, not only those after the resume."""
        so_far = {name: {"count": metric._update_count, "state": metric.metric_state}
                  for name, metric in self._train_accumulators().items()}
        if self.is_embedding:
            so_far["embedding_stats"] = {"sums": self.epoch_stats.sums,
                                         "count": self.epoch_stats.count}
        return so_far

    def _restore_train_epoch_so_far(self, so_far: dict | None) -> None:
        if not so_far:  # a checkpoint from before these were saved: the epoch restarts its means
            return
        for name, metric in self._train_accumulators().items():
            for state, value in so_far[name]["state"].items():
                setattr(metric, state, value.to(self.device) if torch.is_tensor(value) else value)
            metric._update_count = so_far[name]["count"]
        if self.is_embedding:
            self.epoch_stats.sums = dict(so_far["embedding_stats"]["sums"])
            self.epoch_stats.count = so_far["embedding_stats"]["count"]

    def _fit_resumed_schedule(self, scheduler) -> None:
        """On resume, keep the saved position in the schedule but the shape computed for this
        run: a resumed OneCycle with a raised max_epochs stretches instead of overrunning its
        total steps (its saved state holds the old total and phase boundaries)."""
        checkpoint = getattr(self, "_resumed_checkpoint", None)
        if not checkpoint or not checkpoint.get("lr_schedulers"):
            return
        saved = checkpoint["lr_schedulers"][0]
        fresh = scheduler.state_dict()
        fresh.update({k: saved[k] for k in ("last_epoch", "_step_count", "_last_lr") if k in saved})
        checkpoint["lr_schedulers"][0] = fresh
