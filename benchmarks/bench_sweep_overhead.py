"""sweep_overhead: what a multirun costs per trial beyond the trial's own fit time.

Project: one `imgexp-train -m` of 10 `trainer=debug` trials (basic sweeper, then the optuna
sweeper), wall time of the whole command. Baseline: the same 10 fits + tests in this process
with data and config set up once. (project - baseline) / 10 is the per-trial overhead:
process start and imports (once), composing each job's config, data set-up, run files,
and for Optuna the study's storage round trips. Wall and CPU seconds are both reported:
on a shared, overloaded machine the CPU figures are the ones that stay comparable.
"""

import os
import resource
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


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _command_seconds(args: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one imgexp-train command."""
    start, cpu = time.perf_counter(), _children_cpu()
    subprocess.run([sys.executable, "-m", "imgexp.train", *args], check=True, cwd=REPO,
                   capture_output=True, env={**os.environ, "WANDB_MODE": "offline"})
    return time.perf_counter() - start, _children_cpu() - cpu


def multirun_seconds(data_dir: Path, sweep: list[str]) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        return _command_seconds(["-m", *DEBUG_TRIAL, f"paths.data_dir={data_dir}",
                                 f"hydra.sweep.dir={tmp}/sweep", *sweep])


def fits_in_process_seconds(data_dir: Path) -> tuple[float, float]:
    """The trials' own fit + test time, everything else done once, outside the clock."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from imgexp.data.build import build_datamodule
    from imgexp.models import build_model
    from imgexp.paths import CONFIG_DIR

    with tempfile.TemporaryDirectory() as tmp, \
            initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", [*DEBUG_TRIAL, f"paths.data_dir={data_dir}",
                                f"paths.output_dir={tmp}"])
        datamodule = build_datamodule(cfg)
        datamodule.setup()
        wall = cpu = 0.0
        for _ in range(N_TRIALS):
            model = build_model(cfg, datamodule.classes, datamodule.train_labels())
            trainer = instantiate(cfg.trainer, callbacks=[], logger=False)
            start, start_cpu = time.perf_counter(), time.process_time()
            trainer.fit(model, datamodule=datamodule)
            trainer.test(model, datamodule=datamodule, verbose=False)
            wall += time.perf_counter() - start
            cpu += time.process_time() - start_cpu
    return wall, cpu


def run(quick: bool = False) -> dict:
    from imgexp.data.digits import ensure_digits

    data_dir = REPO / "data"
    ensure_digits(data_dir / "digits")
    repeats = 1 if quick else 3
    optuna = ["hydra/sweeper=optuna", f"hydra.sweeper.n_trials={N_TRIALS}",
              "optimizer.lr=tag(log, interval(1e-4, 1e-2))"]

    def median(measure):  # -> (wall, cpu), each the median of the repeats
        runs = [measure() for _ in range(repeats)]
        return tuple(statistics.median(r[i] for r in runs) for i in (0, 1))

    fit = median(lambda: fits_in_process_seconds(data_dir))
    basic = median(lambda: multirun_seconds(data_dir, [f"seed=range({N_TRIALS})"]))
    tuned = median(lambda: multirun_seconds(data_dir, optuna))
    startup = median(lambda: _command_seconds(["--cfg", "job"]))
    figures = {"setup": f"{N_TRIALS} trials of trainer=debug on the built-in digits (32 px), "
                        f"median of {repeats}; os.getloadavg()={os.getloadavg()[0]:.1f} "
                        f"on {os.cpu_count()} cores"}
    for i, unit in enumerate(("wall", "CPU")):
        figures.update({
            f"baseline: fits + tests in one process, {unit} s": round(fit[i], 2),
            f"process start + compose (imgexp-train --cfg job), {unit} s": round(startup[i], 2),
            f"basic sweeper multirun, {unit} s": round(basic[i], 2),
            f"optuna sweeper multirun, {unit} s": round(tuned[i], 2),
            f"overhead per trial, basic launcher, {unit} s (goal < 2)":
                round((basic[i] - fit[i]) / N_TRIALS, 2),
            f"overhead per trial, optuna sweeper, {unit} s":
                round((tuned[i] - fit[i]) / N_TRIALS, 2),
        })
    return figures

if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
