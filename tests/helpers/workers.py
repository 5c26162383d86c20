"""Several `imgexp-train -m` sweep processes on one study, as on several machines.

The aids below hold a trial after its first epoch on the study's own state, not on timing, so
a test knows that two workers ran trials at the same time, or kills a worker mid-trial."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch import Callback
from optuna.trial import TrialState

from helpers.sweeps import TINY, _env
from imgexp.training.optuna_storage import open_storage


class Rendezvous(Callback):
    """Test aid: the first trial that reaches the end of an epoch waits until `count` trials of
    the study run at once (so two workers are mid-trial together), then writes `flag`; once
    `flag` exists nothing waits."""

    def __init__(self, storage: str, study_name: str, flag: str, count: int = 2) -> None:
        self.storage, self.study_name, self.flag, self.count = storage, study_name, Path(flag), count

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        study = optuna.load_study(study_name=self.study_name, storage=open_storage(self.storage))
        deadline = time.monotonic() + 300
        while not self.flag.exists():
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if len(running) >= self.count:
                self.flag.write_text(" ".join(str(t.number) for t in running))
            elif time.monotonic() > deadline:
                raise TimeoutError(f"{self.count} trials never ran at once")
            time.sleep(0.2)


class HoldFirst(Callback):
    """Test aid: the first trial of the study to end an epoch writes `flag` (its process id and
    trial number) and hangs, so the test can kill that worker mid-trial."""

    def __init__(self, flag: str) -> None:
        self.flag = Path(flag)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        try:
            fd = os.open(self.flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # one holder only
        except FileExistsError:
            return
        os.write(fd, f"{os.getpid()} {HydraConfig.get().job.num}".encode())  # num: trial number
        os.close(fd)
        while True:
            time.sleep(0.05)


def aid(name: str, **kwargs) -> list[str]:
    return [f"+callbacks.{name}._target_=helpers.workers.{name}",
            *(f"+callbacks.{name}.{k}={v}" for k, v in kwargs.items())]


def worker_args(log_dir: Path, data_dir: Path, storage: str, study: str, n_trials: int,
                *extra: str, grace_period: int = 60) -> list[str]:
    """A tiny sweep; the default grace period keeps a loaded machine from failing live trials."""
    return ["-m", f"paths.log_dir={log_dir}", f"paths.data_dir={data_dir}", *TINY,
            "trainer.max_epochs=1", "test=false", "hydra/sweeper=optuna", f"hydra.sweeper.storage={storage}",
            f"hydra.sweeper.study_name={study}", f"hydra.sweeper.n_trials={n_trials}",
            "hydra.sweeper.heartbeat_interval=1", f"hydra.sweeper.grace_period={grace_period}",
            "optimizer.lr=interval(1e-3,1e-2)", *extra]


def start_worker(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "imgexp.train", *args], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return out
