"""features: end-to-end images/s of imgexp-select's extraction (decode + resize + forward,
batched, cache written) vs the seed's per-image loop (open, transform, forward one image at
a time), and vs the network alone on random tensors of the same batch size.

Goals (issue 5): >= 3x the naive loop; >= 0.8 of model-only (the pipeline, not the network,
must not be the bottleneck). ResNet50 (random init, weights do not change the speed) at 224,
on the real 100x100 photos (decoding is nearly free: the network is all the cost, batched or
not) and on the same photos as 12-megapixel JPEGs, the camera case the issue names, where a
full decode costs more than the forward pass and draft decoding in workers pays.
"""

import copy
import tempfile
from pathlib import Path

import torch
from PIL import Image
from torchvision import transforms

from benchmarks.common import REAL_PHOTOS, camera_jpegs, median_time
from imgexp.features.extractor import FeatureExtractor, extract_features

BATCH, WORKERS, SIZE = 32, 2, 224
BACKBONE = {"_target_": "imgexp.models.backbones.TimmBackbone", "name": "resnet50"}


def photos(n: int) -> tuple[list[Path], str]:
    """n real photos spread over the classes (sorted, every k-th), else synthetic JPEGs."""
    if REAL_PHOTOS.is_dir():
        files = sorted(REAL_PHOTOS.rglob("*.jpg"))
        step = max(1, len(files) // n)
        return files[::step][:n], f"sign_language_digits ({len(files)} real 100x100 JPEGs)"
    tmp = Path(tempfile.mkdtemp(prefix="bench_features_"))
    gen = torch.Generator().manual_seed(0)
    for i in range(n):
        arr = torch.randint(0, 256, (480, 640, 3), dtype=torch.uint8, generator=gen).numpy()
        Image.fromarray(arr).save(tmp / f"{i:04d}.jpg", quality=90)
    return sorted(tmp.glob("*.jpg")), "synthetic 640x480 JPEGs (real photos not found)"


def naive_loop(paths: list[Path], model: torch.nn.Module) -> None:
    """As the seed wrote it: one image at a time, full decode, torchvision transforms."""
    tf = transforms.Compose([transforms.Resize(SIZE), transforms.CenterCrop(SIZE),
                             transforms.ToTensor(),
                             transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    with torch.no_grad():
        for path in paths:
            x = tf(Image.open(path).convert("RGB")).unsqueeze(0)
            model(x).numpy()


def model_only(extractor: FeatureExtractor, n: int) -> None:
    images = torch.randint(0, 256, (BATCH, 3, SIZE, SIZE), dtype=torch.uint8)
    for _ in range(0, n, BATCH):
        extractor(images)


def compare(paths: list[Path], n_naive: int, extractor: FeatureExtractor,
            naive_model: torch.nn.Module, repeats: int) -> tuple[float, float, float]:
    """-> seconds for all paths: imgexp's pipeline, the naive loop, the network alone."""
    cache = Path(tempfile.mkdtemp(prefix="bench_features_cache_"))

    def pipeline() -> None:
        extract_features(paths, extractor, cache, recompute=True, batch_size=BATCH,
                         num_workers=WORKERS, progress=False)

    t_model = median_time(lambda: model_only(extractor, len(paths)), repeats)
    t_pipe = median_time(pipeline, repeats)
    t_naive = median_time(lambda: naive_loop(paths[:n_naive], naive_model), repeats)
    return t_pipe, t_naive * len(paths) / n_naive, t_model


def run(quick: bool = False) -> dict:
    # the per-image loop is the slow one: timed on fewer images, compared per image
    n, n_naive, n_big, repeats = (32, 16, 16, 1) if quick else (128, 32, 32, 3)
    paths, source = photos(n)
    extractor = FeatureExtractor.from_backbone(BACKBONE, image_size=SIZE)
    naive_model = copy.deepcopy(extractor.network.backbone).to(memory_format=torch.contiguous_format)
    model_only(extractor, BATCH)  # warm-up (oneDNN kernels, allocator)
    big = camera_jpegs(paths[:n_big], Path(tempfile.mkdtemp(prefix="bench_features_big_")))
    out = {"setup": f"ResNet50 at {SIZE}, batch {BATCH}, {WORKERS} workers, "
                    f"{torch.get_num_threads()} threads, {extractor.precision}; "
                    f"median of {repeats}"}
    for tag, files, naive_n in ((source, paths, n_naive),
                                ("the same photos as 12-MP JPEGs", big, n_big // 2)):
        t_pipe, t_naive, t_model = compare(files, naive_n, extractor, naive_model, repeats)
        out |= {f"{tag}, {len(files)} images: imgexp-select images/s": round(len(files) / t_pipe, 2),
                f"{tag}: naive per-image loop images/s": round(len(files) / t_naive, 2),
                f"{tag}: model only (random tensors) images/s": round(len(files) / t_model, 2),
                f"{tag}: speed-up vs naive loop (goal >= 3)": round(t_naive / t_pipe, 2),
                f"{tag}: fraction of model-only (goal >= 0.8)": round(t_model / t_pipe, 2)}
    return out


if __name__ == "__main__":
    for key, value in run(quick=False).items():
        print(f"{key}: {value}")
