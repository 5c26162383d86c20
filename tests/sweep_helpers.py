"""Running imgexp entry points as a user does (a subprocess), with tiny digits trials."""

import subprocess
import sys
from pathlib import Path

# a trial in a couple of seconds: 16 px digits, small CNN, few batches, CSV logging only
TINY = ["logger=csv", "~callbacks.progress_bar", "trainer.enable_progress_bar=false",
        "data.image_size=16", "model.backbone.channels=[16,32]", "trainer.max_epochs=2",
        "++trainer.limit_train_batches=4"]


def run_stage(module: str, args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} {args} failed:\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def multirun(log_dir: Path, data_dir: Path, *overrides: str, check: bool = True):
    return run_stage("imgexp.train", ["-m", f"paths.log_dir={log_dir}",
                                      f"paths.data_dir={data_dir}", *TINY, *overrides], check)
