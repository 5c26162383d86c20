"""How fast imgexp-app gets its gallery ready: first start (every image decoded and embedded)
versus a restart on the cached gallery (content hashes + cache reads only), one process run.

Gallery: the sign-language digits photos (2,064 JPEGs) when present, else the built-in digits.
Model: a simple_cnn checkpoint at 64 px with its initial weights (timings do not depend on
training).
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import real_photos_or_digits
from imgexp.app.gallery import load_gallery
from imgexp.features.extractor import FeatureExtractor
from imgexp.models import build_model


def write_checkpoint(path: Path, classes: list[str]) -> Path:
    """A checkpoint as imgexp-train writes it (class names + resolved config + weights)."""
    from hydra import compose, initialize_config_dir

    from imgexp.paths import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["data.image_size=64", "paths.output_dir=unused"])
    model = build_model(cfg, classes)
    torch.save({"state_dict": model.state_dict(),
                "imgexp": {"class_names": classes, "config": model.config}}, path)
    return path


def run(quick: bool = False) -> dict:
    repeats = 1 if quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root, name = real_photos_or_digits()
        classes = sorted(d.name for d in root.iterdir() if d.is_dir())
        if quick:  # a few images per class: the same code paths in seconds
            small = work / "quick"
            for c in classes:
                (small / c).mkdir(parents=True)
                for f in sorted((root / c).iterdir())[:20]:
                    (small / c / f.name).symlink_to(f)
            root, name = small, f"{name}, 20 per class"
        ckpt = write_checkpoint(work / "model.ckpt", classes)
        extractor = FeatureExtractor.from_checkpoint(ckpt, precision="fp32")
        cold, warm = [], []
        for r in range(repeats):
            cache = work / f"cache-{r}"
            start = time.perf_counter()
            gallery = load_gallery(root, extractor, cache)
            cold.append(time.perf_counter() - start)
            start = time.perf_counter()
            again = load_gallery(root, extractor, cache)
            warm.append(time.perf_counter() - start)
            assert gallery.computed == len(gallery) and again.computed == 0
    cold_s, warm_s = statistics.median(cold), statistics.median(warm)
    return {"images": len(gallery), "gallery": name,
            "first_start_s": round(cold_s, 3), "cached_start_s": round(warm_s, 3),
            "speedup": round(cold_s / warm_s, 1), "repeats": repeats}


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
