"""Structured configs for `hydra/sweeper=optuna` and its `sampler` / `pruner` sub-groups.

Field names follow hydra-optuna-sweeper so its users feel at home; `pruner` and a default
SQLite storage in the sweep directory are what this plugin adds.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class TPESamplerConf:
    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = None
    n_startup_trials: int = 10
    multivariate: bool = False


@dataclass
class RandomSamplerConf:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = None


@dataclass
class CmaEsSamplerConf:
    _target_: str = "optuna.samplers.CmaEsSampler"
    seed: int | None = None
    n_startup_trials: int = 1


@dataclass
class GridSamplerConf:
    """The grid is built from `params` (every interval needs a step: use range or choice)."""

    _target_: str = "optuna.samplers.GridSampler"
    seed: int | None = None


@dataclass
class NopPrunerConf:
    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class MedianPrunerConf:
    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 5   # complete trials before anything is pruned
    n_warmup_steps: int = 0     # epochs a trial always runs
    interval_steps: int = 1


@dataclass
class HyperbandPrunerConf:
    """Resources are validation epochs (the seed's Keras Tuner Hyperband: 10 epochs, factor 3)."""

    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: int = 10
    reduction_factor: int = 3


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.imgexp_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    _recursive_: bool = False  # sampler/pruner stay configs: the pruner's goes to every trial
    defaults: list[Any] = field(default_factory=lambda: ["_self_", {"sampler": "tpe"},
                                                         {"pruner": "none"}])
    sampler: Any = None
    pruner: Any = None
    direction: Any = "maximize"      # or minimize; a list for multi-objective studies
    study_name: str | None = None    # null: the sweep directory's name
    storage: str | None = None       # null: sqlite:///<sweep dir>/optuna.db
    n_trials: int = 20               # finished (complete + pruned) trials the study should hold
    n_jobs: int = 1                  # trials handed to the launcher at once
    max_failure_rate: float = 0.5    # stop once failures exceed this share of planned trials
    heartbeat_interval: int = 60     # seconds between a running trial's heartbeats
    grace_period: int | None = None  # a trial without heartbeat this long is failed and re-run
    params: dict[str, str] | None = None


cs = ConfigStore.instance()
cs.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="imgexp")
for name, node in {"tpe": TPESamplerConf, "random": RandomSamplerConf,
                   "cmaes": CmaEsSamplerConf, "grid": GridSamplerConf}.items():
    cs.store(group="hydra/sweeper/sampler", name=name, node=node, provider="imgexp")
for name, node in {"none": NopPrunerConf, "median": MedianPrunerConf,
                   "hyperband": HyperbandPrunerConf}.items():
    cs.store(group="hydra/sweeper/pruner", name=name, node=node, provider="imgexp")
