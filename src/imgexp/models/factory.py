"""Build the LightningModule from a composed config, or rebuild it from a checkpoint alone."""

from pathlib import Path

import numpy as np
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from imgexp.data.names import check_class_names
from imgexp.errors import ImgexpError
from imgexp.models.module import ImageClassifier
from imgexp.models.safe_load import check_targets, safe_load


def build_mixup(cfg: DictConfig | None, num_classes: int):
    if not cfg or not cfg.get("enabled", False):
        return None
    from timm.data import Mixup

    # targets stay pure mixtures: the loss applies model.loss.label_smoothing (and class
    # weights) to them, so smoothing is set in one place and never applied twice (configs
    # of older runs still carry a model.mixup.label_smoothing key)
    kwargs = {k: v for k, v in cfg.items() if k not in ("enabled", "label_smoothing")}
    return Mixup(num_classes=num_classes, label_smoothing=0.0, **kwargs)


def _instantiate(node, **kwargs):
    """hydra's instantiate, letting a user error (ImgexpError) through as itself: Hydra wraps
    it in an InstantiationException, which would print a traceback instead of one line."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        if isinstance(exc.__cause__, ImgexpError):
            raise exc.__cause__ from None
        raise


def _check_head_and_loss(head, loss, trainable: bool) -> None:
    """An embedding head needs a metric loss (it has no class logits) and vice versa; a
    model with nothing to train (descriptors + k-NN head) never uses its loss."""
    embedding_head = getattr(head, "kind", "") == "embedding"
    metric_loss = hasattr(loss, "collapse_value")
    if embedding_head and not metric_loss and trainable:
        raise ImgexpError("model/head=embedding outputs embeddings, not class logits: pair it "
                          "with model/loss=hard_triplet, triplet, ce_triplet or contrastive")
    if metric_loss and not embedding_head:
        raise ImgexpError("a triplet loss needs embeddings: use model/head=embedding "
                          "(or model/loss=cross_entropy with a softmax head)")


def build_model(cfg: DictConfig, class_names: list[str],
                train_labels: np.ndarray | None = None) -> ImageClassifier:
    n = len(class_names)
    backbone = _instantiate(cfg.model.backbone)
    head = _instantiate(cfg.model.head, in_features=backbone.num_features, num_classes=n)
    loss = _instantiate(cfg.model.loss, train_labels=train_labels, num_classes=n)
    trainable = any(p.requires_grad for p in (*backbone.parameters(), *head.parameters()))
    _check_head_and_loss(head, loss, trainable)
    mixup = build_mixup(cfg.model.get("mixup"), n)
    if mixup is not None and getattr(head, "kind", "") != "classifier":
        raise ImgexpError("model.mixup needs a softmax head (mixed labels have no meaning for "
                          "a triplet/embedding loss): set model.mixup.enabled=false")
    optimizer = instantiate(cfg.optimizer) if cfg.get("optimizer") else None
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    module = ImageClassifier(
        backbone, head, loss, optimizer, scheduler, class_names,
        mean=tuple(cfg.model.mean), std=tuple(cfg.model.std),
        channels_last=cfg.model.channels_last, mixup=mixup,
        config=OmegaConf.to_container(cfg, resolve=True))
    if cfg.model.get("compile"):
        # in place: state_dict keys stay the same as without compile
        module.backbone.compile()
    return module


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ImgexpError(f"checkpoint {path} not found: point at a file a training run wrote "
                          "(RUN/checkpoints/best.ckpt, or last.ckpt to resume)")
    ckpt = safe_load(path)  # data only: a file that would run code is refused, not opened
    if not isinstance(ckpt, dict) or "imgexp" not in ckpt:
        raise ImgexpError(f"{path} is not an imgexp checkpoint (no class names/config inside)")
    check_checkpoint_contents(path, ckpt)
    check_class_names(ckpt["imgexp"]["class_names"], f"checkpoint {path}")
    # what every stage builds from it (Hydra's own section is never built from a checkpoint;
    # a resume checks the callbacks and loggers it runs)
    check_targets(path, ckpt["imgexp"]["config"], skip=("hydra", "callbacks", "logger"))
    return ckpt


def check_checkpoint_contents(path: str | Path, ckpt: dict) -> None:
    """What every stage reads from a checkpoint is there and of the right kind: a dict with an
    `imgexp` key but other contents (hand-made, another tool's) once failed in a traceback."""
    if problem := _contents_problem(ckpt):
        raise ImgexpError(f"{path} is not a usable imgexp checkpoint ({problem}): point at a "
                          "file a training run wrote (RUN/checkpoints/best.ckpt)")


def _contents_problem(ckpt: dict) -> str | None:
    meta = ckpt["imgexp"]
    if not isinstance(meta, dict):
        return "its imgexp entry is not a mapping"
    names = meta.get("class_names")
    if not isinstance(names, list | tuple) or not names \
            or not all(isinstance(name, str) for name in names):
        return "no class names in imgexp.class_names"
    config = meta.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        return "no model config in imgexp.config"
    if not isinstance(ckpt.get("state_dict"), dict):
        return "no weights in state_dict"
    return None


def load_model(path: str | Path, map_location: str = "cpu") -> ImageClassifier:
    """Rebuild the trained model from its checkpoint; eval mode, no optimizer."""
    return model_from_checkpoint(read_checkpoint(path), map_location)


def model_from_checkpoint(ckpt: dict, map_location: str = "cpu") -> ImageClassifier:
    """load_model for a checkpoint already read (a stage that also needs its metadata)."""
    cfg = OmegaConf.create(ckpt["imgexp"]["config"])
    with open_dict(cfg):
        # weights come from the checkpoint: never reach for the network, another weights
        # file (the one the run started from) or the train labels
        if "pretrained" in cfg.model.backbone:
            cfg.model.backbone.pretrained = False
        if "checkpoint_path" in cfg.model.backbone:
            cfg.model.backbone.checkpoint_path = None
        if "class_weights" in cfg.model.loss:
            cfg.model.loss.class_weights = None
        cfg.model.compile = False
        cfg.optimizer = None
        cfg.scheduler = None
    module = build_model(cfg, ckpt["imgexp"]["class_names"])
    try:
        module.load_state_dict(ckpt["state_dict"], strict=False)
    except RuntimeError as error:  # torch lists every mismatch over many lines
        first = str(error).split("\n\t")[1] if "\n\t" in str(error) else str(error)
        raise ImgexpError(f"the checkpoint's weights do not fit the model its own config builds "
                          f"({first.strip()}): the file was changed after training; use the "
                          "run's own best.ckpt or last.ckpt") from None
    return module.to(map_location).eval()
