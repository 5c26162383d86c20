"""sweep_overhead: what a multirun costs per trial beyond the trial's own fit time.

Project: one `imgexp-train -m` of 10 `trainer=debug` trials (basic sweeper, then the optuna
sweeper), wall time of the whole command. Baseline: the same 10 fits + tests in this process
with data and config set up once. (project - baseline) / 10 is the per-trial overhead:
process start and imports (once), composing each job's config, data set-up, run files,
and for Optuna the study's storage round trips.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_TRIALS = 10
REPO = Path(__file__).resolve().parents[1]
DEBUG_TRIAL = ["trainer=debug", "logger=csv", "~callbacks.progress_bar",
               "trainer.enable_progress_bar=false", "data.image_size=32"]


def _command_seconds(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "imgexp.train", *args], check=True, cwd=REPO,
                   capture_output=True, env={**os.environ, "WANDB_MODE": "offline"})
    return time.perf_counter() - start


def multirun_seconds(data_dir: Path, sweep: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        return _command_seconds(["-m", *DEBUG_TRIAL, f"paths.data_dir={data_dir}",
                                 f"hydra.sweep.dir={tmp}/sweep", *sweep])


def fits_in_process_seconds(data_dir: Path) -> float:
    """The trials' own fit + test time, everything else done once, outside the clock."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from imgexp.fit import build_datamodule
    from imgexp.models import build_model
    from imgexp.paths import CONFIG_DIR

    with tempfile.TemporaryDirectory() as tmp, \
            initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", [*DEBUG_TRIAL, f"paths.data_dir={data_dir}",
                                f"paths.output_dir={tmp}"])
        datamodule = build_datamodule(cfg)
        datamodule.setup()
        total = 0.0
        for _ in range(N_TRIALS):
            model = build_model(cfg, datamodule.classes, datamodule.train_labels())
            trainer = instantiate(cfg.trainer, callbacks=[], logger=False)
            start = time.perf_counter()
            trainer.fit(model, datamodule=datamodule)
            trainer.test(model, datamodule=datamodule, verbose=False)
            total += time.perf_counter() - start
    return total


def run(quick: bool = False) -> dict:
    from imgexp.data.digits import ensure_digits

    data_dir = REPO / "data"
    ensure_digits(data_dir / "digits")
    repeats = 1 if quick else 3
    optuna = ["hydra/sweeper=optuna", f"hydra.sweeper.n_trials={N_TRIALS}",
              "optimizer.lr=tag(log, interval(1e-4, 1e-2))"]
    fit = statistics.median(fits_in_process_seconds(data_dir) for _ in range(repeats))
    basic = statistics.median(multirun_seconds(data_dir, [f"seed=range({N_TRIALS})"])
                              for _ in range(repeats))
    tuned = statistics.median(multirun_seconds(data_dir, optuna) for _ in range(repeats))
    startup = statistics.median(_command_seconds(["--cfg", "job"]) for _ in range(repeats))
    return {
        "setup": f"{N_TRIALS} trials of trainer=debug on the built-in digits (32 px), "
                 f"median of {repeats}",
        "baseline: fits + tests in one process, s": round(fit, 2),
        "process start + compose (imgexp-train --cfg job), s": round(startup, 2),
        "basic sweeper multirun, s": round(basic, 2),
        "optuna sweeper multirun, s": round(tuned, 2),
        "overhead per trial, basic launcher, s (goal < 2)": round((basic - fit) / N_TRIALS, 2),
        "overhead per trial, optuna sweeper, s": round((tuned - fit) / N_TRIALS, 2),
        "multirun / baseline time ratio (basic)": round(basic / fit, 2),
    }


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
