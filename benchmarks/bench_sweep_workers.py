"""sweep_workers: one Optuna study run by 2 sweep processes on a PostgreSQL server vs by 1.

Project: two `imgexp-train -m` processes started together with the same study name and
`hydra.sweeper.storage=postgresql+psycopg://…`, wall time until both exit. Baseline: one such
process for the same n_trials. Both on a throwaway local server (tests/helpers/postgres.py),
each process limited to one thread, so the ratio says how well two workers share a study on
a 2-core machine (1 worker would be 1.0x, perfect sharing 2.0x); the study must end with
exactly n_trials finished trials either way.
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_sweep_overhead import DEBUG_TRIAL, REPO

sys.path.insert(0, str(REPO / "tests"))  # the test suite's throwaway server, one implementation
from helpers.postgres import MISSING, pg_bin_dir, postgres_server  # noqa: E402


def _workers_seconds(n_workers: int, url: str, study: str, n_trials: int, data_dir: Path,
                     log_dir: Path) -> float:
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    args = ["-m", *DEBUG_TRIAL, f"paths.data_dir={data_dir}", f"paths.log_dir={log_dir}",
            "hydra/sweeper=optuna", f"hydra.sweeper.storage='{url}'",
            f"hydra.sweeper.study_name={study}", f"hydra.sweeper.n_trials={n_trials}",
            "optimizer.lr=tag(log, interval(1e-4, 1e-2))"]
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "imgexp.train", *args,
                               f"hydra.sweep.dir={log_dir}/{study}/w{i}"], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for i in range(n_workers)]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"worker failed: {err[-2000:]}")
    return time.perf_counter() - start


def _finished(url: str, study: str) -> int:
    import optuna
    from optuna.trial import TrialState

    loaded = optuna.load_study(study_name=study, storage=url)
    return len(loaded.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)))


def run(quick: bool = False) -> dict:
    from imgexp.data.digits import ensure_digits

    if (bin_dir := pg_bin_dir()) is None:
        return {"skipped": MISSING}
    data_dir = REPO / "data"
    ensure_digits(data_dir / "digits")
    n_trials = 4 if quick else 12
    with postgres_server(bin_dir) as url, tempfile.TemporaryDirectory() as tmp:
        one = _workers_seconds(1, url, "one", n_trials, data_dir, Path(tmp))
        two = _workers_seconds(2, url, "two", n_trials, data_dir, Path(tmp))
        finished = {n: _finished(url, n) for n in ("one", "two")}
    return {
        "setup": f"{n_trials} trials of trainer=debug on the built-in digits (32 px), one thread "
                 f"per process; os.getloadavg()={os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
        "1 worker, wall s": round(one, 1),
        "2 workers on one PostgreSQL study, wall s": round(two, 1),
        "speed-up, 2 workers vs 1 (x)": round(one / two, 2),
        "finished trials (1 worker, 2 workers)": [finished["one"], finished["two"]],
        "reading": "the trials are CPU-bound: a second worker helps only as far as a core is "
                   "idle, so with the load average above the core count the ratio stays ~1",
    }


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
