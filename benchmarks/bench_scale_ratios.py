"""scale_ratios: issue 17's two ratios measured in one run, interleaved, so that both arms of
each ratio see the same machine load: extraction with 2 shard processes vs 1 process
(bench_sharded_select) and one Optuna study run by 2 PostgreSQL workers vs 1
(bench_sweep_workers), in the order A B B A for each, with the load average at every step.
"""

import os
import sys
import tempfile
from pathlib import Path

from benchmarks.bench_sharded_select import BACKBONE, BATCH, SIZE, extraction_seconds
from benchmarks.bench_sweep_workers import (
    MISSING,
    _finished,
    _workers_seconds,
    pg_bin_dir,
    postgres_server,
)
from benchmarks.common import REPO, real_photos_or_digits


def _load() -> float:
    return round(os.getloadavg()[0], 1)


def run(quick: bool = False) -> dict:
    from imgexp.data.digits import ensure_digits

    if (bin_dir := pg_bin_dir()) is None:
        return {"skipped": MISSING}
    root, source = real_photos_or_digits()
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    paths = paths[:64] if quick else paths[:256]
    n_trials = 2 if quick else 6
    data_dir = REPO / "data"
    ensure_digits(data_dir / "digits")
    steps, seconds = [], {}
    with postgres_server(bin_dir) as url, tempfile.TemporaryDirectory() as tmp:
        for i, n in enumerate((1, 2, 2, 1)):  # A B B A: a drift in load hits both arms alike
            t = extraction_seconds(paths, n)
            steps.append(f"extract {n}: {t:.0f} s (load {_load()})")
            seconds.setdefault(("extract", n), []).append(t)
            study = f"s{i}w{n}"
            t = _workers_seconds(n, url, study, n_trials, data_dir, Path(tmp))
            steps.append(f"sweep {n} ({_finished(url, study)} finished): {t:.0f} s "
                         f"(load {_load()})")
            seconds.setdefault(("sweep", n), []).append(t)
    total = {key: sum(v) for key, v in seconds.items()}
    return {
        "setup": f"extraction: {len(paths)} images of {source}, {BACKBONE['name']} at {SIZE} px, "
                 f"batch {BATCH}, each process with its start-up; sweep: {n_trials} trials of "
                 f"trainer=debug (digits, 32 px) on a local PostgreSQL, one thread per worker; "
                 f"{os.cpu_count()} cores shared with other users",
        "steps (in order)": steps,
        "2 shards / 1 process extraction throughput (x)":
            round(total["extract", 1] / total["extract", 2], 2),
        "2 workers / 1 worker sweep throughput (x)":
            round(total["sweep", 1] / total["sweep", 2], 2),
    }


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
