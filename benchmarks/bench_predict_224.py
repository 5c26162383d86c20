"""predict_224: imgexp-predict with the ImageNet-sized models (ResNet50, EfficientNet-B0 at
224 px) on a few hundred real photos, in one run: end to end (decode -> sorted class folders,
imgexp-predict's own code path) vs a naive fp32 per-image loop, and vs model-only throughput
(the same precision, batches already decoded in memory). The measurement itself is
benchmarks/predict_timm.py's; bench_predict runs it too, after its small-CNN part.

    IMGEXP_BENCH_PHOTOS=/path/to/sign_language_digits python -m benchmarks predict_224 [--quick]
"""

import argparse
import os
import tempfile
from pathlib import Path

import torch

from benchmarks import predict_timm
from benchmarks.bench_predict import images_in, per_image_loop, project, subset
from benchmarks.common import real_photos_or_digits

PER_CLASS = 30  # 300 photos: ~1 min per model end to end on 2 cores
QUICK_PER_CLASS = 5


def load_average() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg()) + f" (1/5/15 min, {os.cpu_count()} CPUs)"


def run(quick: bool = False) -> dict:
    photos, source_name = real_photos_or_digits()
    workers = min(2, os.cpu_count() or 1)
    per_class = QUICK_PER_CLASS if quick else PER_CLASS
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = subset(photos, tmp / "photos", per_class)
        paths = images_in(source)
        figures = {"data": f"{source_name}: {len(paths)} images ({per_class} per class)",
                   "num_workers": workers, "load average at start": load_average()}
        figures |= predict_timm.run(tmp, source, paths, quick, project, per_image_loop, workers)
    figures["load average at end"] = load_average()
    figures["torch threads"] = torch.get_num_threads()
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    for key, value in run(parser.parse_args().quick).items():
        print(f"{key}: {value}")
