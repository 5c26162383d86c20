"""The files every run directory carries: metrics.json and run_info.json (DESIGN.md)."""

import math
import os
import platform
import subprocess
from pathlib import Path

import torch

from imgexp.atomic import write_json_atomic, write_text_atomic
from imgexp.paths import PROJECT_ROOT
from imgexp.tracking.environment import environment_info


def to_number(value):
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def describe_device() -> str:
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"cpu: {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def write_run_info(run_dir: str | Path, seed: int, manifest_hash: str, wall_time_s: float,
                   extra: dict | None = None) -> Path:
    """run_info.json, plus git_diff.patch when the clone has uncommitted changes."""
    run_dir = Path(run_dir)
    commit = (_git("rev-parse", "HEAD") or "").strip() or None
    status = _git("status", "--porcelain", "--untracked-files=no")
    dirty = bool(status and status.strip())
    if dirty:
        write_text_atomic(run_dir / "git_diff.patch", _git("diff", "HEAD") or "")
    info = {"git_commit": commit, "git_dirty": dirty, **environment_info(),
            "python": platform.python_version(), "seed": seed, "device": describe_device(),
            "manifest_hash": manifest_hash, "wall_time_s": round(wall_time_s, 3), **(extra or {})}
    return write_json_atomic(run_dir / "run_info.json", info)
