"""predict: images/s of imgexp-predict end to end (list, decode in worker processes, batched
forward, predictions.csv, copy into class folders) vs. a per-image loop doing the same work
one image at a time (open, convert, resize, forward, copy), as the CBIR seed's script did.

Both use the same randomly initialised model of the digits_cnn recipe (throughput does not
depend on the weights), at the recipe's 32 px and at 64 px, and the same photos:
../shared/data/sign_language_digits (the built-in digits when absent). Measured twice: with one
intra-op thread for both (the loop's best case on a shared machine, where two threads made its
single-image forwards ~10x slower) and with torch's default threads for both (what the seed's
script would get). The forward of this CNN is compute-bound on CPU, so batching gains
little by itself (see RESULTS.md); the rest comes from decoding in parallel worker processes.

The ImageNet-sized models (ResNet50, EfficientNet-B0 at 224 px, inference.precision=auto vs
a naive fp32 loop, and model-only throughput) are benchmarks/predict_timm.py's part.

    python -m benchmarks predict [--quick]   (writes RESULTS.md's section)
    python -m benchmarks.bench_predict [--quick]
"""

import argparse
import itertools
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from benchmarks import predict_timm
from benchmarks.common import camera_jpegs, median_time, real_photos_or_digits, untrained_checkpoint
from imgexp.data.splits import is_candidate_image
from imgexp.models import load_model
from imgexp.paths import CONFIG_DIR
from imgexp.predict.pipeline import predict_folder

IMAGE_SIZES = (32, 64)
BIG_PHOTOS = 40  # 12-megapixel camera photos


def make_checkpoint(folder: Path, image_size: int) -> Path:
    return untrained_checkpoint(folder / f"model_{image_size}.ckpt",
                                ["experiment=digits_cnn", f"data.image_size={image_size}"])


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


def project(ckpt: Path, photos: Path, output: Path, workers: int, precision: str = "fp32",
            channels_last: bool = False) -> dict:
    """imgexp-predict, its config composed as the command does; by default fp32 in NCHW for
    the small CNN (as this part measured before inference.precision existed); predict_timm
    passes auto and channels-last."""
    GlobalHydra.instance().clear()
    overrides = [f"ckpt_path={ckpt}", f"input={photos}", f"output={output}", "device=cpu",
                 f"inference.precision={precision}", f"inference.channels_last={channels_last}",
                 "predict.ood=softmax", f"predict.num_workers={workers}",
                 "predict.progress=false"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("predict", overrides=overrides)
    return predict_folder(cfg)


def subset(photos: Path, folder: Path, per_class: int) -> Path:
    for d in sorted(p for p in photos.iterdir() if p.is_dir()):
        (folder / d.name).mkdir(parents=True)
        for f in sorted(p for p in d.iterdir() if is_candidate_image(p))[:per_class]:
            shutil.copy2(f, folder / d.name / f.name)
    return folder


def images_in(folder: Path) -> list[Path]:
    """The images only: a LICENSE/README next to the class folders is rejected by predict."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_candidate_image(p))


def run(quick: bool = False) -> dict:
    photos, source_name = real_photos_or_digits()
    repeats = 1 if quick else 3
    workers = min(2, os.cpu_count() or 1)
    default_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = photos
        if quick:  # 20 images per class
            source = subset(photos, tmp / "photos", 20)
        paths = images_in(source)
        figures = {"data": f"{source_name}: {len(paths)} images", "repeats": repeats,
                   "num_workers": workers, "batch_size": "auto (16 on CPU)"}
        runs = itertools.count()
        # quick: torch's default threads only
        threads_tried = (default_threads,) if quick else (1, default_threads)
        for threads, size in itertools.product(threads_tried, IMAGE_SIZES):
            torch.set_num_threads(threads)
            ckpt = make_checkpoint(tmp, size)
            t_project = median_time(
                lambda ckpt=ckpt: project(ckpt, source, tmp / f"p{next(runs)}", workers), repeats)
            t_loop = median_time(
                lambda ckpt=ckpt: per_image_loop(ckpt, paths, tmp / f"b{next(runs)}"), repeats)
            tag = f"{size}px, {threads} thread(s)"
            figures |= {f"project images/s {tag}": round(len(paths) / t_project, 1),
                        f"per-image loop images/s {tag}": round(len(paths) / t_loop, 1),
                        f"speedup {tag} (goal >= 3)": round(t_loop / t_project, 2)}
        figures |= _big_photos(tmp, paths[:10 if quick else BIG_PHOTOS], workers, repeats)
        torch.set_num_threads(default_threads)
        if quick:  # 5 photos per class: ResNet50 at 224 px runs ~10 images/s on 2 cores
            source = subset(photos, tmp / "photos_timm", 5)
        figures |= predict_timm.run(tmp, source, images_in(source), quick, project,
                                    per_image_loop, workers)
    torch.set_num_threads(default_threads)
    return figures


def _big_photos(tmp: Path, paths: list[Path], workers: int, repeats: int) -> dict:
    """The same comparison on 12-megapixel JPEGs (the photos upscaled): where decoding, not
    the network, is the cost, and imgexp's JPEG draft mode decodes at a fraction of the size."""
    big = tmp / "big"
    big_paths = camera_jpegs(paths, big / "x")
    ckpt = make_checkpoint(tmp, 64)
    runs = itertools.count()
    t_project = median_time(lambda: project(ckpt, big, tmp / f"bp{next(runs)}", workers), repeats)
    t_loop = median_time(lambda: per_image_loop(ckpt, big_paths, tmp / f"bb{next(runs)}"), repeats)
    tag = f"64px, {len(big_paths)} 12-MP JPEGs, {torch.get_num_threads()} thread(s)"
    return {f"project images/s {tag}": round(len(big_paths) / t_project, 2),
            f"per-image loop images/s {tag}": round(len(big_paths) / t_loop, 2),
            f"speedup {tag} (goal >= 3)": round(t_loop / t_project, 2)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 photos instead of all")
    for key, value in run(parser.parse_args().quick).items():
        print(f"{key}: {value}")
