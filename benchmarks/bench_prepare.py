"""prepare: files/s of imgexp-prepare's checks vs the seeds' single-threaded PIL loop.

Baseline: `Image.open(p).verify()` then `Image.open(p).load()` for every file, one at a time
(the seeds' `is_image` + decode). Project: `inspect_all` with 2 worker processes, which also
hashes (sha256, streamed), sniffs the type, reads size after EXIF orientation and mode; then
the whole stage (scan, checks, duplicates, split, CSV/JSON/PNG outputs). Also: draft-mode
decoding of 12-megapixel JPEGs vs a full-resolution check.

    python -m benchmarks.bench_prepare [--quick] [--root DIR]
"""

import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from PIL import Image

from benchmarks.common import REAL_PHOTOS, real_photos_or_digits
from imgexp.paths import CONFIG_DIR
from imgexp.prepare.checks import CheckOptions, inspect_all
from imgexp.prepare.pipeline import run_prepare
from imgexp.prepare.scan import scan_root

WORKERS = 2


def measure(fn, repeats: int) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds (this process + its reaped workers)."""
    walls, cpus = [], []
    for _ in range(repeats):
        cpu0, wall0 = _cpu(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - wall0)
        cpus.append(_cpu() - cpu0)
    return statistics.median(walls), statistics.median(cpus)


def _cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def seed_loop(root: Path, rels: list[str]) -> int:
    good = 0
    for rel in rels:
        try:
            with Image.open(root / rel) as img:
                img.verify()
            with Image.open(root / rel) as img:
                img.load()
            good += 1
        except Exception:
            pass
    return good


def whole_stage(root: Path, out: Path) -> None:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("prepare", [f"data.root={root}", f"paths.output_dir={out}",
                                  f"prepare.workers={WORKERS}", "prepare.progress=false"])
    with contextlib.redirect_stdout(io.StringIO()):  # the printed table, once per repeat
        run_prepare(cfg)


def big_jpegs(folder: Path, n: int) -> list[str]:
    """12-megapixel photo-like JPEGs: smooth structure plus sensor-like noise."""
    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        base = Image.fromarray((rng.random((30, 40, 3)) * 255).astype(np.uint8))
        arr = np.asarray(base.resize((4000, 3000), Image.BICUBIC), dtype=np.int16)
        arr = (arr + rng.normal(0, 6, arr.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"big{i}.jpg", quality=90)
        names.append(f"big{i}.jpg")
    return names


def run(quick: bool = False, root: Path | None = None) -> dict:
    root, source = (Path(root), Path(root).name) if root else real_photos_or_digits()
    every = [c.path for c in scan_root(root).candidates]
    rels = every[:600] if quick else every
    repeats = 3 if quick else 5
    seed_loop(root, rels)  # warm the page cache: both sides then read from memory
    check = CheckOptions()
    t_base, cpu_base = measure(lambda: seed_loop(root, rels), repeats)
    t_check, cpu_check = measure(lambda: inspect_all(root, rels, check, WORKERS, False),
                                 repeats)
    t_check1, _ = measure(lambda: inspect_all(root, rels, check, 1, False), repeats)
    t_near, _ = measure(lambda: inspect_all(root, rels, CheckOptions(phash=True), WORKERS,
                                             False), repeats)
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(repeats))
        t_stage, _ = measure(lambda: whole_stage(root, Path(tmp, str(next(counter)))), repeats)
        big = Path(tmp, "big")
        big.mkdir()
        names = big_jpegs(big, 2 if quick else 4)
        full = CheckOptions(full_decode=True)
        t_full, _ = measure(lambda: inspect_all(big, names, full, 1, False), repeats)
        t_draft, _ = measure(lambda: inspect_all(big, names, check, 1, False), repeats)
    n = len(rels)
    return {
        "data": f"{source}: {n} files ({'quick' if quick else 'all'}), median of {repeats}",
        "seed loop verify()+load() files/s": round(n / t_base, 1),
        f"imgexp checks ({WORKERS} processes) files/s": round(n / t_check, 1),
        "ratio checks vs seed loop (goal >= 1.8 on 2 cores)": round(t_base / t_check, 2),
        "ratio checks in 1 process vs seed loop": round(t_base / t_check1, 2),
        "CPU us/file: seed loop / imgexp checks (all processes)":
            f"{cpu_base / n * 1e6:.0f} / {cpu_check / n * 1e6:.0f}",
        "load average during the run (2 cores)": round(os.getloadavg()[0], 1),
        "ratio checks + perceptual hash vs seed loop": round(t_base / t_near, 2),
        "ratio whole stage (scan..outputs+plot, every file) vs seed loop":
            round(len(every) / t_stage / (n / t_base), 2),
        "12 MP JPEG: draft check speed-up vs full decode": round(t_full / t_draft, 2),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--root", type=Path, help=f"default: {REAL_PHOTOS}")
    args = parser.parse_args()
    print(json.dumps(run(args.quick, args.root), indent=1))
