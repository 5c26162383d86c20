"""The Hydra-facing sweeper class; Optuna is imported only when a sweep starts, because Hydra
imports every plugin module on each launch."""

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaSweeper(Sweeper):
    def __init__(self, sampler: Any, pruner: Any, direction: Any, study_name: str | None,
                 storage: str | None, n_trials: int, n_jobs: int, max_failure_rate: float,
                 heartbeat_interval: int, grace_period: int | None,
                 params: DictConfig | None) -> None:
        from ._impl import OptunaSweeperImpl

        self.sweeper = OptunaSweeperImpl(sampler, pruner, direction, study_name, storage,
                                         n_trials, n_jobs, max_failure_rate,
                                         heartbeat_interval, grace_period, params)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function,
                           config=config)

    def sweep(self, arguments: list[str]) -> None:
        return self.sweeper.sweep(arguments)
