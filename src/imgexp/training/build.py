"""Instantiate the callbacks/ and logger/ config groups (named entries, each a _target_)."""

from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig


def _enabled_entries(cfg: DictConfig | None):
    """Entries with a _target_ and without `enabled: false` (the switch is ours, not an arg)."""
    for entry in (cfg or {}).values():
        if entry is None or not entry.get("_target_"):
            continue
        if entry.get("enabled", True) is False:
            continue
        yield {k: v for k, v in entry.items() if k != "enabled"}


def instantiate_callbacks(cfg: DictConfig | None) -> list[Callback]:
    """The enabled callbacks; LearningRateMonitor last (Lightning moves checkpoints after it).

    Lightning calls callbacks in list order and the monitor reads the LRs in the same hooks
    (train epoch / batch start) where others set them (progressive unfreezing holds frozen
    groups at 0): read last, it logs the LRs the optimizer then uses.
    """
    callbacks = [instantiate(entry) for entry in _enabled_entries(cfg)]
    return sorted(callbacks, key=lambda c: isinstance(c, LearningRateMonitor))


def instantiate_loggers(cfg: DictConfig | None, **wandb_kwargs) -> list[Logger]:
    """`wandb_kwargs` (id, resume, tags, group, name) go to the wandb entry only."""
    loggers = []
    for entry in _enabled_entries(cfg):
        extra = wandb_kwargs if "Wandb" in entry["_target_"] else {}
        loggers.append(instantiate(entry, **extra))
    return loggers
