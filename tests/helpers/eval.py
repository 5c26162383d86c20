"""Helpers for the eval/predict tests: run a stage as the user would, make unseen images."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[2]


def run_stage(module: str, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    """`python -m imgexp.<module> overrides...` with this checkout's code and configs."""
    env = {**os.environ, "PROJECT_ROOT": str(REPO), "WANDB_MODE": "offline",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", f"imgexp.{module}", *overrides], env=env,
                          capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"imgexp.{module} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def write_unseen_images(folder: Path, n_noise: int = 15, n_shapes: int = 15, seed: int = 0
                        ) -> list[Path]:
    """Images of no digit class: uniform colour noise and filled rectangles/ellipses."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_noise):
        path = folder / f"noise_{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    for i in range(n_shapes):
        img = Image.new("RGB", (32, 32), tuple(int(c) for c in rng.integers(0, 256, 3)))
        x0, y0 = (int(v) for v in rng.integers(0, 12, 2))
        x1, y1 = (int(v) for v in rng.integers(20, 32, 2))
        draw = ImageDraw.Draw(img)
        shape = draw.ellipse if i % 2 else draw.rectangle
        shape([x0, y0, x1, y1], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        path = folder / f"shape_{i:02d}.png"
        img.save(path)
        paths.append(path)
    return paths
