"""The training run: data -> model -> Trainer.fit -> test on the best checkpoint -> run files."""

import logging
import time
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig

from imgexp.callbacks.build import instantiate_callbacks, instantiate_loggers
from imgexp.data import ImageDataModule
from imgexp.errors import ImgexpError
from imgexp.models import build_model
from imgexp.models.factory import read_checkpoint
from imgexp.tracking.run_files import to_number, write_json_atomic, write_run_info

log = logging.getLogger(__name__)


def build_datamodule(cfg: DictConfig) -> ImageDataModule:
    augmentation = instantiate(cfg.augmentation) if cfg.get("augmentation") else None
    return instantiate(cfg.data, augmentation=augmentation, _recursive_=False)


def _hydra_context() -> dict:
    """Experiment name, multirun group and override string, for W&B's tags/group/name."""
    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    experiment = hc.runtime.choices.get("experiment")
    ctx = {"tags": [experiment] if experiment else None,
           "name": hc.job.override_dirname or None}
    if hc.mode == RunMode.MULTIRUN:
        ctx["group"] = Path(hc.sweep.dir).name
    return ctx


def _resume_meta(cfg: DictConfig, classes: list[str]) -> dict:
    if not cfg.get("ckpt_path"):
        return {}
    meta = read_checkpoint(cfg.ckpt_path)["imgexp"]
    if meta["class_names"] != classes:
        raise ImgexpError(f"checkpoint {cfg.ckpt_path} was trained on classes "
                          f"{meta['class_names']} but the data has {classes}: point data.root "
                          "at the same dataset or drop ckpt_path")
    return meta


def collect_metrics(trainer: L.Trainer, module) -> dict:
    metrics = {k: to_number(v) for k, v in trainer.callback_metrics.items()}
    metrics = {k: v for k, v in metrics.items() if not k.endswith("_step")}
    metrics = {k.removesuffix("_epoch"): v for k, v in metrics.items()}
    metrics["epochs"] = trainer.current_epoch
    metrics["data/skipped_images"] = len(module.skipped)
    return metrics


def fit_and_test(cfg: DictConfig) -> dict:
    start = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    datamodule = build_datamodule(cfg)
    datamodule.resolve()
    resume = _resume_meta(cfg, datamodule.classes)
    datamodule.split_table().to_csv(run_dir / "data_split.csv", index=False)
    model = build_model(cfg, datamodule.classes, datamodule.train_labels())

    wandb_kwargs = _hydra_context()
    if resume.get("wandb_run_id"):
        wandb_kwargs.update(id=resume["wandb_run_id"], resume="allow")
    loggers = instantiate_loggers(cfg.get("logger"), **wandb_kwargs)
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(model.config)
        if isinstance(logger, WandbLogger):
            model.wandb_run_id = logger.version

    exit_code = 1
    try:
        log.info("Training on %s: %s", datamodule.root, datamodule.describe()["train"])
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        metrics = collect_metrics(trainer, model)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if cfg.get("test", True):
            trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False)
            metrics.update(collect_metrics(trainer, model))
        metrics["best_model_path"] = best
        write_json_atomic(run_dir / "metrics.json", metrics)
        exit_code = 0
    finally:
        for logger in loggers:
            if isinstance(logger, WandbLogger) and logger._experiment is not None:
                logger.experiment.finish(exit_code=exit_code)
        write_run_info(run_dir, cfg.seed, datamodule.manifest_hash(), time.perf_counter() - start,
                       extra={"exit_code": exit_code})
    return metrics
