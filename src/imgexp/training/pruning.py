"""Optuna pruning for a trial launched by the optuna sweeper (hydra_plugins.imgexp_optuna_sweeper).

The sweeper passes `optuna_trial={storage, study_name, number}` to the job; this callback opens
the study through its storage (so it works in joblib workers and submitit jobs alike), reports
the monitored metric after each validation epoch, and stops training when the pruner says so.
The run then ends normally with `trial/pruned` in metrics.json, which the sweeper turns into
the PRUNED state.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from hydra.utils import instantiate
from lightning.pytorch import Callback, LightningModule, Trainer
from omegaconf import DictConfig

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)
PRUNER_ATTR = "imgexp_pruner"  # written by the sweeper: the pruner's config


class OptunaPruning(Callback):
    def __init__(self, storage: str, study_name: str, number: int, monitor: str):
        self.storage, self.study_name, self.number = storage, study_name, int(number)
        self.monitor = monitor
        self.trial: optuna.Trial | None = None
        self.pruned_epoch: int | None = None

    @property
    def pruned(self) -> bool:
        return self.pruned_epoch is not None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero or self.trial is not None:
            return
        # here, not at the top: every training run imports this module, and Optuna with its
        # SQLAlchemy storages costs ~0.6 s of start-up that only a trial uses
        import optuna

        from imgexp.training.optuna_storage import open_storage

        storage = open_storage(self.storage)
        try:
            trial_id = storage.get_trial_id_from_study_id_trial_number(
                storage.get_study_id_from_name(self.study_name), self.number)
        except KeyError:  # a relaunch where the study is gone
            log.info("Optuna study %s has no trial %d: training without pruning",
                     self.study_name, self.number)
            return
        if storage.get_trial(trial_id).state.is_finished():
            # a relaunch from a trial's .hydra/config.yaml: the trial is over, train it fully
            log.info("Optuna trial %d is finished: training without pruning", self.number)
            return
        study = optuna.load_study(study_name=self.study_name, storage=storage)
        if PRUNER_ATTR in study.user_attrs:
            study.pruner = instantiate(study.user_attrs[PRUNER_ATTR])
        self.trial = optuna.Trial(study, trial_id)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        value = trainer.callback_metrics.get(self.monitor)
        if self.trial is not None and value is not None:
            self.trial.report(float(value), step=trainer.current_epoch)
            prune = self.trial.should_prune()
        if trainer.strategy.broadcast(prune):  # every rank stops together under DDP
            self.pruned_epoch = trainer.current_epoch
            trainer.should_stop = True
            log.info("Optuna trial %d pruned after epoch %d (%s = %.4f)", self.number,
                     trainer.current_epoch, self.monitor, float(value))

    def summary(self) -> dict:
        return {"trial/number": self.number, "trial/pruned": self.pruned,
                "trial/pruned_epoch": self.pruned_epoch}


def trial_pruning(cfg: DictConfig) -> OptunaPruning | None:
    """The pruning callback when the run is an Optuna trial (cfg.optuna_trial), else None."""
    link = cfg.get("optuna_trial")
    if not link:
        return None
    return OptunaPruning(link.storage, link.study_name, link.number, cfg.monitor)
