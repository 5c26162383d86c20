"""predict: images/s of imgexp-predict end to end (list, decode in worker processes, batched
forward, predictions.csv, copy into class folders) vs. a per-image loop doing the same work
one image at a time (open, convert, resize, forward, copy), as the CBIR seed's script did.

Both use the same randomly initialised model of the digits_cnn recipe (throughput does not
depend on the weights), at the recipe's 32 px and at 64 px, and the same photos:
../shared/data/sign_language_digits (or $BENCH_PHOTOS).

    python -m benchmarks.bench_predict [--quick]
"""

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from PIL import Image

from imgexp.evaluation.predict import predict_folder
from imgexp.models import build_model, load_model
from imgexp.paths import CONFIG_DIR, PROJECT_ROOT

# BENCH_PHOTOS: another folder of class folders (e.g. from a worktree, where ../shared differs)
PHOTOS = Path(os.environ.get("BENCH_PHOTOS",
                             PROJECT_ROOT / ".." / "shared" / "data" / "sign_language_digits"))
IMAGE_SIZES = (32, 64)


def make_checkpoint(folder: Path, image_size: int) -> Path:
    """A checkpoint with the contract's contents (weights, class names, config), untrained."""
    GlobalHydra.instance().clear()
    overrides = ["experiment=digits_cnn", f"data.image_size={image_size}", "paths.output_dir=."]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    classes = [str(d) for d in range(10)]
    model = build_model(cfg, classes)
    path = folder / f"model_{image_size}.ckpt"
    torch.save({"state_dict": model.state_dict(),
                "imgexp": {"class_names": classes, "config": model.config}}, path)
    return path


def per_image_loop(ckpt: Path, paths: list[Path], output: Path) -> None:
    """The baseline: everything for one image before the next."""
    model = load_model(ckpt)
    size = model.config["data"]["image_size"]
    for path in paths:
        img = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None]
        proba = model.predict_proba(x)[0]
        label = model.class_names[int(proba.argmax())]
        (output / label).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, output / label / path.name)


def project(ckpt: Path, photos: Path, output: Path, workers: int) -> None:
    cfg = OmegaConf.create({
        "ckpt_path": str(ckpt), "input": str(photos), "output": str(output), "device": "cpu",
        "predict": {"mode": "copy", "unknown_threshold": 0.6, "ood": "softmax", "top_k": 3,
                    "batch_size": None, "num_workers": workers}})
    predict_folder(cfg)


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def run(quick: bool = False) -> dict:
    photos = PHOTOS.resolve()
    if not photos.is_dir():
        raise SystemExit(f"{photos} not found: the benchmark needs the sign-language photos")
    repeats = 3
    workers = min(2, os.cpu_count() or 1)
    # one intra-op thread for both: the per-image loop's best case (on a shared 2-core machine
    # two threads make its tiny single-image forwards ~10x slower, which would flatter us)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = photos
        if quick:  # 20 photos per class
            source = tmp / "photos"
            for d in sorted(p for p in photos.iterdir() if p.is_dir()):
                (source / d.name).mkdir(parents=True)
                for f in sorted(d.iterdir())[:20]:
                    shutil.copy2(f, source / d.name / f.name)
        # the photos only: the folder's LICENSE/README are rejected by predict, not decoded
        paths = sorted(p for p in source.rglob("*.jpg"))
        figures = {"images": len(paths), "repeats": repeats, "num_workers": workers,
                   "batch_size": "auto (16 on CPU)", "torch_threads": torch.get_num_threads()}
        for size in IMAGE_SIZES:
            ckpt = make_checkpoint(tmp, size)
            times = {"project": [], "baseline": []}
            for r in range(repeats):
                out = tmp / f"{size}_{r}"
                times["project"].append(timed(project, ckpt, source, out / "p", workers))
                times["baseline"].append(timed(per_image_loop, ckpt, paths, out / "b"))
            project_ips = len(paths) / statistics.median(times["project"])
            baseline_ips = len(paths) / statistics.median(times["baseline"])
            figures |= {f"project_images_per_s_{size}px": round(project_ips, 1),
                        f"baseline_images_per_s_{size}px": round(baseline_ips, 1),
                        f"speedup_{size}px": round(project_ips / baseline_ips, 2)}
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 photos instead of all")
    for key, value in run(parser.parse_args().quick).items():
        print(f"{key}: {value}")
