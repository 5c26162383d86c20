"""Running imgexp entry points as a user does (a subprocess), with tiny digits trials."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from lightning.pytorch import Callback

TESTS_DIR = Path(__file__).resolve().parents[1]

# a trial in a couple of seconds: 16 px digits, small CNN, few batches, CSV logging only
TINY = ["logger=csv", "~callbacks.progress_bar", "trainer.enable_progress_bar=false",
        "data.image_size=16", "model.backbone.channels=[16,32]", "trainer.max_epochs=2",
        "++trainer.limit_train_batches=4"]


def _env() -> dict:
    """The tests folder on the path, so a job can use test aids such as HoldJob."""
    path = os.pathsep.join([str(TESTS_DIR), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, "PYTHONPATH": path}


def run_stage(module: str, args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=900, env=_env())
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} {args} failed:\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def multirun(log_dir: Path, data_dir: Path, *overrides: str, check: bool = True):
    return run_stage("imgexp.train", ["-m", f"paths.log_dir={log_dir}",
                                      f"paths.data_dir={data_dir}", *TINY, *overrides], check)


class HoldJob(Callback):
    """Test aid: job `job` of a multirun writes `flag` (its pid) after its first training epoch
    and then waits to be signalled, so a test interrupts a trial mid-fit, not by timing.
    Once `flag` exists nothing is held: a rerun of the same command runs through."""

    def __init__(self, flag: str, job: int, swallow: bool = False) -> None:
        self.flag, self.job, self.swallow = Path(flag), job, swallow

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if HydraConfig.get().job.num != self.job or self.flag.exists():
            return
        self.flag.write_text(str(os.getpid()))
        try:
            while True:
                time.sleep(0.05)
        except KeyboardInterrupt:
            if not self.swallow:
                raise
            trainer.should_stop = True  # as Lightning < 2.4 did: fit returns, cut short


def hold_overrides(flag: Path, job: int, swallow: bool = False) -> list[str]:
    return ["+callbacks.hold._target_=helpers.sweeps.HoldJob", f"+callbacks.hold.flag={flag}",
            f"+callbacks.hold.job={job}", f"+callbacks.hold.swallow={swallow}"]


def interrupt_when_held(args: list[str], flag: Path, signum: int) -> subprocess.CompletedProcess:
    """Run `imgexp.train args` in its own process group, send `signum` to the group (as Ctrl-C
    does) once the held job wrote `flag`, and return the finished process."""
    proc = subprocess.Popen([sys.executable, "-m", "imgexp.train", *args], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        while not flag.exists() and proc.poll() is None:
            time.sleep(0.1)
        if proc.poll() is None:
            os.killpg(proc.pid, signum)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


class FailJob(Callback):
    """Test aid: job `job` of a multirun fails with a bug (not a user error) once training
    starts, so a test sees what a failing trial leaves in its log."""

    def __init__(self, job: int) -> None:
        self.job = job

    def on_train_start(self, trainer, pl_module) -> None:
        if HydraConfig.get().job.num == self.job:
            raise RuntimeError(f"job {self.job} failed on purpose")
