"""Helpers shared by the benchmarks: repeated timing and the real photos, when present."""

import os
import statistics
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# IMGEXP_BENCH_PHOTOS: where the photos are when ../shared is not beside the checkout (a git
# worktree, another machine)
REAL_PHOTOS = Path(os.environ.get("IMGEXP_BENCH_PHOTOS",
                                  REPO.parent / "shared" / "data" / "sign_language_digits"))


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def real_photos_or_digits() -> tuple[Path, str]:
    """The real sign-language photos (../shared) when present, else the built-in digits."""
    if REAL_PHOTOS.is_dir():
        return REAL_PHOTOS, "sign_language_digits (real JPEG photos)"
    from imgexp.data.digits import ensure_digits

    return ensure_digits(REPO / "data" / "digits"), "built-in digits (PNG)"


def camera_jpegs(paths: list[Path], folder: Path, side: tuple[int, int] = (4000, 3000)
                 ) -> list[Path]:
    """The photos upscaled to 12-megapixel JPEGs, camera-sized: where decoding, not the
    network, is the cost (imgexp decodes JPEGs in draft mode, at a fraction of the size)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, path in enumerate(paths):
        target = folder / f"{i:04d}.jpg"
        Image.open(path).convert("RGB").resize(side, Image.BILINEAR).save(target, quality=90)
        out.append(target)
    return out


def untrained_checkpoint(path: Path, overrides: list[str]) -> Path:
    """A checkpoint with the contract's contents (weights, class names, config) of the train
    config composed with `overrides`, untrained: throughput does not depend on the weights."""
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from imgexp.models import build_model
    from imgexp.paths import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "paths.output_dir=."])
    classes = [str(d) for d in range(10)]
    model = build_model(cfg, classes)
    torch.save({"state_dict": model.state_dict(),
                "imgexp": {"class_names": classes, "config": model.config}}, path)
    return path
