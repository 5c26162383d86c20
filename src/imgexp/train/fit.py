"""The training run: data -> model -> Trainer.fit -> test on the best checkpoint -> run files."""

import csv
import logging
import time
import warnings
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from omegaconf import DictConfig, open_dict

from imgexp.atomic import write_frame_atomic, write_json_atomic
from imgexp.data.build import build_datamodule
from imgexp.device import fix_threads
from imgexp.errors import ImgexpError
from imgexp.folder_lock import hold_folder
from imgexp.models import build_model
from imgexp.models.factory import read_checkpoint
from imgexp.tracking.environment import warn_if_environment_differs
from imgexp.tracking.run_files import to_number, write_run_info
from imgexp.tracking.wandb_run import finish_wandb, flatten_config, run_identity
from imgexp.training.batch_seed import SeedEachBatch
from imgexp.training.build import instantiate_callbacks, instantiate_loggers
from imgexp.training.checkpoint_io import AtomicCheckpointIO
from imgexp.training.ddp import adapt_trainer_config, is_rank_zero
from imgexp.training.loader_state import ResumeLoaderPosition
from imgexp.training.pruning import trial_pruning
from imgexp.training.wall_time import WallTime

log = logging.getLogger(__name__)


def _resume_meta(cfg: DictConfig, classes: list[str]) -> dict:
    if not cfg.get("ckpt_path"):
        return {}
    ckpt = read_checkpoint(cfg.ckpt_path)
    meta = {**ckpt["imgexp"], "global_step": ckpt["global_step"]}
    if meta["class_names"] != classes:
        raise ImgexpError(f"checkpoint {cfg.ckpt_path} was trained on classes "
                          f"{meta['class_names']} but the data has {classes}: point data.root "
                          "at the same dataset or drop ckpt_path")
    return meta


def _continue_in_checkpoint_run(cfg: DictConfig) -> None:
    """Resuming from RUN/checkpoints/*.ckpt writes into RUN again: best.ckpt, its score and
    the CSV rows continue there (Hydra's own new folder keeps only that launch's config/log)."""
    ckpt = Path(cfg.ckpt_path)
    if ckpt.parent.name != "checkpoints":
        return
    run_dir = ckpt.resolve().parent.parent
    hold_folder(run_dir, "ckpt_path")  # a run still writing there (or a second resume) refused
    if run_dir != Path(cfg.paths.output_dir).resolve():
        log.info("Resuming %s: continuing in its run directory %s", ckpt, run_dir)
        with open_dict(cfg):
            cfg.paths.output_dir = str(run_dir)


def _keep_csv_rows(loggers: list[Logger], global_step: int) -> None:
    """CSVLogger deletes metrics.csv when it opens an existing folder: keep the rows logged
    before the checkpoint (the resumed run logs the later ones again)."""
    for logger in loggers:
        if not isinstance(logger, CSVLogger):
            continue
        path = Path(logger.log_dir) / "metrics.csv"
        rows = list(csv.DictReader(path.open(newline=""))) if path.is_file() else []
        with warnings.catch_warnings():  # "...will be deleted": not the rows kept here
            warnings.filterwarnings("ignore", message="Experiment logs directory")
            writer = logger.experiment  # deletes the file
        writer.metrics = [{k: float(v) for k, v in row.items() if v != ""}
                          for row in rows if int(float(row["step"])) < global_step]
        for row in writer.metrics:
            row["step"] = int(row["step"])
            if "epoch" in row:
                row["epoch"] = int(row["epoch"])


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
    threads = fix_threads()
    warn_if_environment_differs(cfg)  # a relaunch or resume in other package versions
    datamodule = build_datamodule(cfg)
    datamodule.resolve()
    if len(datamodule.classes) < 2:  # the metrics need two (torchmetrics raised a traceback)
        raise ImgexpError(f"{datamodule.root} holds one class {datamodule.classes}: training "
                          "needs two or more class folders (imgexp-audit checks one class)")
    resume = _resume_meta(cfg, datamodule.classes)
    if resume:
        _continue_in_checkpoint_run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_rank_zero():  # under DDP every rank runs this function; one writes the run's files
        write_frame_atomic(datamodule.split_table(), run_dir / "data_split.csv")
    model = build_model(cfg, datamodule.classes, datamodule.train_labels())

    wandb_kwargs = run_identity()
    if resume.get("wandb_run_id"):
        wandb_kwargs.update(id=resume["wandb_run_id"], resume="allow")
    loggers = instantiate_loggers(cfg.get("logger"), **wandb_kwargs)
    if resume:
        _keep_csv_rows(loggers, resume["global_step"])
    pruning = trial_pruning(cfg)  # None unless the run is an Optuna trial
    wall = WallTime(start)
    callbacks = [*instantiate_callbacks(cfg.get("callbacks")), ResumeLoaderPosition(),
                 SeedEachBatch(cfg.seed), wall, *([pruning] if pruning else [])]
    adapt_trainer_config(cfg)
    # nothing to learn (descriptors + k-NN head): one pass builds the gallery and saves it
    one_pass = {"max_epochs": 1, "limit_train_batches": 1} if model.gallery_only else {}
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                     plugins=[AtomicCheckpointIO()], **one_pass)
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_hyperparams(flatten_config(model.config))
            model.wandb_run_id = logger.version
        else:
            logger.log_hyperparams(model.config)

    exit_code, metrics = 1, {}
    try:
        log.info("Training on %s: %s", datamodule.root, datamodule.describe()["train"])
        with warnings.catch_warnings():
            if resume:  # continuing in its own run: its checkpoints are expected there
                warnings.filterwarnings("ignore", message="Checkpoint directory .* exists")
            if model.gallery_only:  # no optimizer, no loss: expected, not a slip
                warnings.filterwarnings("ignore", message=r".*returned `None`")
            # Lightning reads the checkpoint again itself: as data only too (models/safe_load.py)
            trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"),
                        weights_only=True)
        metrics = collect_metrics(trainer, model)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if pruning:
            metrics.update(pruning.summary())
        if cfg.get("test", True) and not datamodule.describe()["test"]:
            log.warning("no test split under %s: no test metrics, the val metrics are the "
                        "ones to read", datamodule.root)
        elif cfg.get("test", True) and not (pruning and pruning.pruned):
            trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False,
                         weights_only=True)
            metrics.update(collect_metrics(trainer, model))
        metrics["best_model_path"] = best
        if is_rank_zero():
            write_json_atomic(run_dir / "metrics.json", metrics)
        exit_code = 0
    finally:
        finish_wandb(loggers, metrics, exit_code)
        if is_rank_zero():
            write_run_info(run_dir, cfg.seed, datamodule.manifest_hash(), wall.elapsed(),
                           extra={"exit_code": exit_code, "data_cache": datamodule.cache_used,
                                  "world_size": trainer.world_size,
                                  # what its test computed in: imgexp-eval's `auto` follows it
                                  "precision": str(trainer.precision), "threads": threads})
    return metrics
