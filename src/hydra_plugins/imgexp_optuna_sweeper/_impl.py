"""The sweep loop: ask the study for trials, launch them as Hydra jobs, tell the outcome.

Everything a trial needs to talk to the study (storage URL, study name, trial number) goes to
the job as the `optuna_trial` override, and the pruner's config is kept in the study itself,
so pruning works the same in-process, in joblib workers and in submitit jobs on other hosts.

The sweep process tells every outcome, so it keeps Optuna's heartbeat for the trials it runs:
if it dies (SIGKILL, a lost node), its trials go stale and another sweep process on the study
(running alongside, or the next one) fails them and queues them again
(RetryHeartbeatStaleTrialCallback). Ctrl-C / SIGTERM fail the
running trials at once, queue them again and print the command that continues the study.
"""

import json
import logging
import math
import shlex
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.storages._heartbeat import get_heartbeat_thread  # what Study.optimize uses
from optuna.trial import TrialState

from imgexp.training.optuna_storage import open_storage
from imgexp.training.pruning import PRUNER_ATTR

from ._results import OFFLINE_WANDB_GLOB, offline_wandb_runs, write_results
from ._search_space import grid_values, parse_search_space, suggest
from ._workers import is_surplus

log = logging.getLogger(__name__)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # what n_trials counts
MAX_RETRY = 2  # an interrupted or stale trial is queued again with its parameters this often
WAIT_POLL_S = 2  # a worker with nothing to start looks at the others' trials this often


@contextmanager
def _optuna_quiet() -> Iterator[None]:
    """Heartbeat and stale-trial retry are experimental in Optuna, and it warns that heartbeats
    are meant for Study.optimize: this loop is ask-and-tell because Hydra launches the trials."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        yield


@dataclass
class Outcome:
    state: TrialState
    values: list[float] | None = None
    error: str | None = None


# a trial asked when other workers had already taken the study's last slot: told FAIL, never run
SURPLUS = Outcome(TrialState.FAIL, error="not run: the study's n_trials were finished or running "
                                       "in other sweep processes when this one asked")


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _format(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def joined_seed(seed: int, done: int) -> int:
    """The sampler seed of a run that joins a study holding `done` trials."""
    return int(np.random.SeedSequence([seed, done]).generate_state(1)[0])


class OptunaSweeperImpl:
    def __init__(self, sampler, pruner, direction, study_name, storage, n_trials, n_jobs,
                 max_failure_rate, heartbeat_interval, grace_period, params) -> None:
        if not 0.0 <= max_failure_rate <= 1.0:
            raise ValueError(f"hydra.sweeper.max_failure_rate={max_failure_rate}: use 0..1")
        self.sampler_cfg, self.pruner_cfg = sampler, pruner
        self.directions = list(direction) if isinstance(direction, list | tuple) or \
            OmegaConf.is_list(direction) else [direction]
        self.study_name, self.storage = study_name, storage
        self.n_trials, self.n_jobs = n_trials, max(1, n_jobs)
        self.max_failure_rate = max_failure_rate
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.params = params or {}
        self.in_flight: list[optuna.Trial] = []  # asked, not told yet
        self.signal: int | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function)
        self.sweep_dir = Path(config.hydra.sweep.dir).resolve()

    # -- the study -----------------------------------------------------------------------------
    def _open_study(self, space: dict) -> optuna.Study:
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        storage = self.storage or f"sqlite:///{self.sweep_dir / 'optuna.db'}"
        name = self.study_name or self.sweep_dir.name
        extra = {}
        if self.sampler_cfg._target_.endswith("GridSampler"):
            extra["search_space"] = {k: grid_values(k, d) for k, d in space.items()}
            grid_size = math.prod(len(v) for v in extra["search_space"].values())
            self.n_trials = min(self.n_trials, grid_size)
        with _optuna_quiet():
            self.retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
            opened = open_storage(storage, self.heartbeat_interval, self.grace_period, self.retry)
        study = optuna.create_study(
            study_name=name, storage=opened, load_if_exists=True,
            directions=[str(d) for d in self.directions],
            sampler=instantiate(self.sampler_cfg, **extra), pruner=instantiate(self.pruner_cfg))
        done = len(study.get_trials(deepcopy=False))
        if done and self.sampler_cfg.get("seed") is not None:
            # a seeded sampler would replay the draws of the study's first trials: continuing
            # (or joining) a study after k trials draws from a seed mixed from (seed, k),
            # reproducibly; not seed + k, which a worker seeded seed + 1 would also draw from
            study.sampler = instantiate(self.sampler_cfg, seed=joined_seed(
                self.sampler_cfg.seed, done), **extra)
        study.set_user_attr(PRUNER_ATTR, OmegaConf.to_container(self.pruner_cfg, resolve=True))
        self.storage_url = storage
        log.info("Study %s in %s: %d finished trial(s) already, %d wanted", name, storage,
                 len(study.get_trials(deepcopy=False, states=FINISHED)), self.n_trials)
        return study

    def _job_overrides(self, trial: optuna.Trial, space: dict, fixed: dict) -> list[str]:
        params = {k: suggest(trial, k, d) for k, d in space.items()}
        link = (f"{{storage:{_quote(self.storage_url)},study_name:{_quote(trial.study.study_name)},"
                f"number:{trial.number}}}")
        return [*(f"{k}={_format(v)}" for k, v in params.items()),
                *(f"{k}={v}" for k, v in fixed.items()),
                f"++optuna_trial={link}",
                f"hydra.sweep.subdir={trial.number}"]  # job dirs never collide on resume

    def _composes(self, overrides: list[str]) -> str | None:
        """Compose the job's config here, so a bad override fails one trial, not the sweep."""
        try:
            self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        except Exception as exc:  # noqa: BLE001 - any composition error fails the trial
            return f"{type(exc).__name__}: {exc}"
        return None

    # -- the loop ------------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> None:
        params = [f"{k}={v}" for k, v in self.params.items()]
        space, fixed = parse_search_space(params + list(arguments))
        study = self._open_study(space)
        # the failure budget is a share of the trials this run plans, so early failures do not
        # stop a long sweep that can still reach its successes
        planned = max(0, self.n_trials - len(study.get_trials(deepcopy=False, states=FINISHED)))
        failed, waiting = 0, False
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while (todo := self._todo(study)) is not None:
                if todo == 0:  # the other trials run elsewhere, or are stale and not failed yet
                    if not waiting:
                        running = [t.number for t in study.get_trials(
                            deepcopy=False, states=(TrialState.RUNNING,))]
                        log.info("Waiting for trial(s) %s, RUNNING in another sweep process (a "
                                 "killed sweep's trials are failed after grace_period=%s s)",
                                 running, self.grace_period or 2 * self.heartbeat_interval)
                    waiting = True
                    time.sleep(min(self.heartbeat_interval, WAIT_POLL_S))
                    continue
                waiting = False
                failed += self._run_batch(study, todo, space, fixed)
                if failed > self.max_failure_rate * planned:
                    write_results(study, self.sweep_dir, self.storage_url)
                    raise RuntimeError(
                        f"{failed} of the {planned} planned trials failed (max_failure_rate="
                        f"{self.max_failure_rate}); see the errors in "
                        f"{self.sweep_dir / 'optimization_results.yaml'}")
        except (KeyboardInterrupt, SystemExit) as exc:
            self._stop(study, exc)
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
        self._report(study)

    def _todo(self, study: optuna.Study) -> int | None:
        """Trials to start now (0: wait for running ones), None once the study is done."""
        with _optuna_quiet():
            fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        finished = sum(t.state in FINISHED for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        grid_done = isinstance(study.sampler, optuna.samplers.GridSampler) and not running \
            and study.sampler.is_exhausted(study)
        if finished >= self.n_trials or grid_done:
            return None
        return max(0, self.n_trials - finished - running)

    def _run_batch(self, study: optuna.Study, todo: int, space: dict, fixed: dict) -> int:
        """Ask, launch and tell up to n_jobs trials; returns how many failed."""
        with ExitStack() as heartbeats:
            for _ in range(min(self.n_jobs, todo)):
                with _optuna_quiet():
                    self.in_flight.append(study.ask())
                trial = self.in_flight[-1]
                heartbeats.enter_context(get_heartbeat_thread(trial._trial_id, study._storage))
            outcomes = {t.number: SURPLUS for t in self.in_flight
                        if is_surplus(study, t.number, self.n_trials)}
            jobs = [(t, self._job_overrides(t, space, fixed)) for t in self.in_flight
                    if t.number not in outcomes]
            for trial, overrides in jobs:
                if error := self._composes(overrides):
                    outcomes[trial.number] = Outcome(TrialState.FAIL, error=error)
            runnable = [(t, o) for t, o in jobs if t.number not in outcomes]
            if runnable:
                returns = self.launcher.launch([o for _, o in runnable],
                                               initial_job_idx=runnable[0][0].number)
                if self.signal:  # a job that swallowed the interrupt returns a cut-short result
                    raise KeyboardInterrupt
                for (trial, _), ret in zip(runnable, returns, strict=True):
                    trial.set_user_attr("job_dir", str(ret.hydra_cfg.hydra.runtime.output_dir))
                    outcomes[trial.number] = self._outcome(ret)
            failed = 0
            while self.in_flight:
                trial = self.in_flight[0]
                failed += self._tell(study, trial, outcomes[trial.number])
                self.in_flight.pop(0)
        return failed

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signal = signum
        raise KeyboardInterrupt

    def _stop(self, study: optuna.Study, exc: BaseException) -> None:
        """Ctrl-C, SIGTERM or an exit in a job: fail the trials that were running (their results
        are cut short), queue them again, and say how to continue."""
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut this short
            signal.signal(signum, signal.SIG_IGN)
        how = signal.Signals(self.signal).name if self.signal else f"exit {exc}"
        numbers = [t.number for t in self.in_flight]
        for trial in self.in_flight:
            frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
            with _optuna_quiet():
                self.retry(study, frozen)  # queued with its parameters, before the error is set
            trial.set_user_attr("error", f"interrupted ({how})")
            study.tell(trial, state=TrialState.FAIL)
        self.in_flight = []
        write_results(study, self.sweep_dir, self.storage_url)
        done = len(study.get_trials(deepcopy=False, states=FINISHED))
        print(f"Sweep interrupted ({how}) with {done} of {self.n_trials} trials finished"
              + (f", trial {', '.join(map(str, numbers))} failed" if numbers else "")
              + f"; to continue the study, run: {self._continue_command()}",
              file=sys.stderr, flush=True)
        if self.signal:
            raise SystemExit(128 + self.signal) from None
        raise exc

    def _continue_command(self) -> str:
        """The command line of this sweep, with the sweep directory fixed when it holds a date."""
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name.removesuffix(".__main__") if spec else None  # -m pkg runs pkg.__main__
        prog = ["python", "-m", module] if module and module != "__main__" \
            else [Path(sys.argv[0]).name]
        args = sys.argv[1:]
        sweep_dir = OmegaConf.to_container(self.config.hydra.sweep, resolve=False)["dir"]
        if "${now:" in str(sweep_dir) and not any(a.startswith("hydra.sweep.dir=") for a in args):
            args = [*args, f"hydra.sweep.dir={self.sweep_dir}"]
        return shlex.join(prog + args)

    def _outcome(self, ret: JobReturn) -> Outcome:
        if ret.status == JobStatus.FAILED:
            try:
                _ = ret.return_value  # re-raises the job's exception
            except Exception as exc:  # noqa: BLE001 - whatever it was, the trial failed
                return Outcome(TrialState.FAIL, error=f"{type(exc).__name__}: {exc}")
        metrics_file = Path(ret.hydra_cfg.hydra.runtime.output_dir) / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
        if metrics is None:  # an app without metrics.json: its return value is the objective
            values = ret.return_value if isinstance(ret.return_value, list | tuple) \
                else [ret.return_value]
        elif metrics.get("trial/pruned"):
            return Outcome(TrialState.PRUNED)
        else:
            keys = ret.cfg.get("optimized_metric")
            keys = list(keys) if OmegaConf.is_list(keys) else [keys]
            values = [metrics.get(k) for k in keys]
        if len(values) != len(self.directions) or not all(
                isinstance(v, int | float) and math.isfinite(v) for v in values):
            return Outcome(TrialState.FAIL, error=f"objective {values} is missing or not a finite "
                                                  f"number (optimized_metric, metrics.json)")
        return Outcome(TrialState.COMPLETE, values=[float(v) for v in values])

    def _tell(self, study: optuna.Study, trial: optuna.Trial, outcome: Outcome) -> bool:
        if outcome.error:
            trial.set_user_attr("error", outcome.error)
            (log.info if outcome is SURPLUS else log.warning)("Trial %d failed: %s",
                                                              trial.number, outcome.error)
        try:
            study.tell(trial, state=outcome.state, values=outcome.values)
        except RuntimeError as exc:  # GridSampler stops the study once the grid is covered
            if "Study.stop" not in str(exc):
                raise
        return outcome.state == TrialState.FAIL and outcome is not SURPLUS

    def _report(self, study: optuna.Study) -> None:
        results = write_results(study, self.sweep_dir, self.storage_url)
        log.info("Optimization results: %s", results)
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        best = ([study.best_trial] if len(self.directions) == 1 else study.best_trials) \
            if done else []
        for trial in best:
            log.info("Best trial %d: %s with %s", trial.number, trial.values, trial.params)
            log.info("Best run directory: %s", trial.user_attrs.get("job_dir"))
        if offline := offline_wandb_runs(self.sweep_dir):
            log.info("%d W&B run(s) are offline; upload them with:\n  wandb sync %s/%s",
                     len(offline), self.sweep_dir, OFFLINE_WANDB_GLOB)
