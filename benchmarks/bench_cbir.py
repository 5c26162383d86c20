"""cbir: the CBIR seed's table, MMAP@10 of each hand-made descriptor, their fusion and a CNN
trained by imgexp, on the real sign-language photos and the built-in digits; and descriptor
extraction speed, batched (imgexp) vs a plain per-image loop (the seed's way).

Every method is scored on the same split: the CNN's run (imgexp-train, data=folder) writes
data_split.csv; its train images are the gallery and its test images the queries, as
imgexp-eval does. Descriptors come from `DescriptorBackbone.describe` (what
model/backbone=descriptors computes), the CNN's vectors from `ImageClassifier.embed`.

The CNN is imgexp's default simple_cnn trained at 32 px (tiny images, so the run finishes on a
shared machine; the descriptors see the photos at 64 px); it scores with its L2-normalised
penultimate features, what the k-NN head and the app compare.

    python -m benchmarks cbir            # CNN 10 epochs, per-image loop over 100 images
    python -m benchmarks cbir --quick    # CNN 2 epochs, per-image loop over 20 images
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra import compose, initialize_config_dir

from benchmarks.common import REAL_PHOTOS
from imgexp.data.digits import ensure_digits
from imgexp.data.image_io import load_rgb
from imgexp.metrics.retrieval import mmap_at_k
from imgexp.models import load_model
from imgexp.models.descriptors import KINDS, DescriptorBackbone
from imgexp.paths import CONFIG_DIR
from imgexp.train.fit import fit_and_test

CNN_SIZE = 32  # px the CNN trains and embeds at, on both datasets
DEPTH = 10
BATCH = 64
QUIET = ["logger=csv", "~callbacks.progress_bar", "trainer.enable_progress_bar=false",
         "data.num_workers=0", "~experiment", "data=folder"]


def train_cnn(root: Path, size: int, epochs: int, out: Path) -> Path:
    """A short imgexp-train run of the default small CNN on the folder; its run dir."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", [*QUIET, f"paths.output_dir={out}", f"data.root={root}",
                                f"data.image_size={size}", f"trainer.max_epochs={epochs}"])
    fit_and_test(cfg)
    return out


def pixels(root: Path, paths: list[str], size: int) -> torch.Tensor:
    return torch.stack([torch.from_numpy(load_rgb(root / p, size)).permute(2, 0, 1)
                        for p in paths])


def batched(fn, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([fn(images[i:i + BATCH]) for i in range(0, len(images), BATCH)])


def dataset_figures(name: str, root: Path, size: int, epochs: int, loop_images: int,
                    out: Path) -> dict:
    run = train_cnn(root, CNN_SIZE, epochs, out / name)
    split = pd.read_csv(run / "data_split.csv", dtype={"label": str})
    gallery, queries = split[split["split"] == "train"], split[split["split"] == "test"]
    g_img, q_img = pixels(root, list(gallery["path"]), size), pixels(root, list(queries["path"]),
                                                                  size)
    g_cnn, q_cnn = (pixels(root, list(gallery["path"]), CNN_SIZE),
                    pixels(root, list(queries["path"]), CNN_SIZE))
    g_lab, q_lab = gallery["label"].to_numpy(), queries["label"].to_numpy()
    classes = {c: i for i, c in enumerate(sorted(set(split["label"])))}
    g_lab, q_lab = np.array([classes[c] for c in g_lab]), np.array([classes[c] for c in q_lab])
    figures: dict = {}
    model = load_model(run / "checkpoints" / "best.ckpt")
    with torch.inference_mode():
        figures[f"{name} MMAP@{DEPTH} cnn (imgexp simple_cnn, {epochs} epochs, {CNN_SIZE}px)"] = \
            round(mmap_at_k(batched(model.embed, q_cnn), q_lab, batched(model.embed, g_cnn),
                            g_lab, k=DEPTH), 4)
    for kinds in [[k] for k in KINDS] + [list(KINDS)]:
        label = kinds[0] if len(kinds) == 1 else "fusion (all five)"
        backbone = DescriptorBackbone(kinds=kinds, image_size=size, cache=False)
        start = time.perf_counter()
        g_vec = batched(backbone.describe, g_img.float() / 255)
        seconds = time.perf_counter() - start
        q_vec = batched(backbone.describe, q_img.float() / 255)
        figures[f"{name} MMAP@{DEPTH} {label}"] = round(mmap_at_k(q_vec, q_lab, g_vec, g_lab,
                                                                 k=DEPTH), 4)
        if name == "sign_language_digits":
            sample = g_img[:loop_images].float() / 255
            start = time.perf_counter()
            for image in sample:  # the seed's loop: one image at a time
                backbone.describe(image[None])
            loop = time.perf_counter() - start
            figures[f"{label} images/s batched (imgexp) vs per-image loop"] = (
                f"{len(g_img) / seconds:.3g} vs {len(sample) / loop:.3g} "
                f"({len(g_img) / seconds / (len(sample) / loop):.1f}x), {size}px")
    figures[f"{name} gallery / queries"] = f"{len(g_img)} / {len(q_img)} at {size}px"
    return figures


def run(quick: bool = False) -> dict:
    torch.manual_seed(0)
    epochs, loop_images = (2, 20) if quick else (10, 100)
    figures: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if REAL_PHOTOS.is_dir():
            figures |= dataset_figures("sign_language_digits", REAL_PHOTOS, 64, epochs,
                                       loop_images, out)
        else:  # say so: a table without its real-photo row must not pass for the full one
            figures["sign_language_digits"] = f"not found at {REAL_PHOTOS} (IMGEXP_BENCH_PHOTOS)"
        figures |= dataset_figures("digits", ensure_digits(out / "data" / "digits"), 32,
                                   epochs, loop_images, out)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=1))
