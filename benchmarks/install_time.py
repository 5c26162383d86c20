"""`make install` on a fresh clone: the locked install (HEAD: `pip install --require-hashes
--no-deps -r requirements.lock`, then the check) against the commit before the lock
(`pip install -e '.[dev]'`, which resolves). Each clone gets its own empty pip cache, so
neither reuses the other's downloads; they run one after the other in this process.

Heavy (two ~6 GB venvs, minutes each), so not a `bench_*` module that `make bench` runs:
`python -m benchmarks.install_time` rewrites its section ("install") of RESULTS.md.
"""

import os
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.__main__ import RESULTS, replace_section, section
from benchmarks.common import REPO


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def _baseline() -> str:
    """The parent of the commit that added requirements.lock."""
    added = _git("log", "--diff-filter=A", "--format=%H", "--", "requirements.lock").split()
    return _git("rev-parse", f"{added[-1]}^")


def _timed_install(commit: str, scratch: Path) -> float:
    clone = scratch / commit[:12]
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", commit], check=True)
    env = {**os.environ, "PIP_CACHE_DIR": str(scratch / f"cache-{commit[:12]}")}
    start = time.perf_counter()
    subprocess.run(["make", "install"], cwd=clone, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def run() -> dict:
    head, before = _git("rev-parse", "HEAD"), _baseline()
    figures = {"setup": f"fresh clone + empty pip cache each, `make install`; before = "
                        f"{before[:10]} (pip install -e .[dev]), after = {head[:10]} (lock)"}
    with tempfile.TemporaryDirectory(prefix="bench_install_") as scratch:
        old = _timed_install(before, Path(scratch))
        new = _timed_install(head, Path(scratch))
    figures.update({"before s": round(old, 1), "after s": round(new, 1),
                    "ratio after / before": round(new / old, 2)})
    return figures


if __name__ == "__main__":
    start = time.perf_counter()
    figures = run()
    print(figures)
    RESULTS.write_text(replace_section(RESULTS.read_text(), "install",
                                       section("install", figures, time.perf_counter() - start)))
