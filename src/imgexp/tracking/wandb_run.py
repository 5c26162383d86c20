"""What a W&B run is called and what it keeps: name = the override string, group = the sweep
(one group per configuration when runs repeat it over folds or seeds), tags = the experiment,
config flattened to dotted keys, the final metrics in the summary."""

import logging
import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from lightning.pytorch.loggers import Logger
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

log = logging.getLogger(__name__)
REPLICATE_KEYS = ("data.fold", "seed")  # runs differing only in these repeat one configuration
INTERNAL_KEYS = ("optuna_trial",)       # set by the optuna sweeper, not a hyperparameter


def quiet_settings(mode: str | None) -> dict:
    """wandb.init settings printing only what the user acts on: nothing offline (the run prints
    its one `wandb sync` command itself), the run's URL but no history/summary block online."""
    return {"silent": True} if (mode or "offline") in ("offline", "disabled") else {"quiet": True}


class WandbLogger(LightningWandbLogger):
    """Lightning's WandbLogger, quiet (see quiet_settings) and without the `anonymous`
    argument Lightning always passes, which wandb >= 0.19 answers with a warning."""

    def __init__(self, *args, **kwargs):
        mode = kwargs.get("mode") or os.environ.get("WANDB_MODE")
        kwargs.setdefault("settings", quiet_settings(mode))
        super().__init__(*args, **kwargs)
        self._wandb_init.pop("anonymous", None)


def configuration_of(overrides: list[str], replicate_keys=REPLICATE_KEYS) -> tuple[str, bool]:
    """The override string without fold/seed (and sweeper internals); True when one was there."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    kept = [o.input_line for o in parsed
            if o.key_or_group not in (*replicate_keys, *INTERNAL_KEYS)]
    replicated = any(o.key_or_group in replicate_keys for o in parsed)
    return ",".join(sorted(kept)), replicated


def run_identity() -> dict:
    """WandbLogger name/group/tags for the current Hydra job ({} outside Hydra)."""
    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    experiment = hc.runtime.choices.get("experiment")
    identity = {"tags": [experiment] if experiment else None,
                "name": hc.job.override_dirname or None}
    if hc.mode == RunMode.MULTIRUN:
        group = Path(hc.sweep.dir).name
        configuration, replicated = configuration_of(list(hc.overrides.task))
        if replicated:
            group = f"{group}/{configuration or 'default'}"
        identity["group"] = group[:128]  # W&B's limit
    return identity


def flatten_config(config: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_config(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def finish_wandb(loggers: list[Logger], metrics: dict, exit_code: int) -> None:
    """Final metrics into the summary, close the run, say how to upload an offline one."""
    for logger in loggers:
        if not isinstance(logger, LightningWandbLogger) or logger._experiment is None:
            continue
        run = logger.experiment
        run.summary.update({k: v for k, v in metrics.items()
                            if isinstance(v, int | float) and not isinstance(v, bool)})
        offline, sync_dir = run.offline, run.settings.sync_dir
        run.finish(exit_code=exit_code)
        if offline:
            log.info("W&B run saved offline; upload it with: wandb sync %s", sync_dir)
