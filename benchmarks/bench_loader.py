"""loader: images/s through imgexp's datamodule vs torchvision ImageFolder + transforms v2
(same image size, workers and batch size), and the RAM cache's second epoch vs its first."""

import torch
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import v2

from benchmarks.common import median_time, real_photos_or_digits
from imgexp.data import ImageDataModule

SIZE, WORKERS, BATCH = 64, 2, 64


def _drain(loader) -> int:
    return sum(len(b["label"] if isinstance(b, dict) else b[1]) for b in loader)


def imgexp_loader(root, cache=None) -> DataLoader:
    dm = ImageDataModule(root=str(root), image_size=SIZE, batch_size=BATCH, num_workers=WORKERS,
                         ratios=(1, 0, 0), cache=cache, persistent_workers=False)
    dm.setup()
    return dm._loader("train")  # no shuffle: same order as the baseline


def baseline_loader(root, normalize: bool) -> DataLoader:
    steps = [v2.ToImage(), v2.Resize((SIZE, SIZE), antialias=True)]
    if normalize:  # the usual recipe; imgexp normalises inside the model instead
        steps += [v2.ToDtype(torch.float32, scale=True),
                  v2.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
    dataset = datasets.ImageFolder(str(root), transform=v2.Compose(steps))
    return DataLoader(dataset, batch_size=BATCH, num_workers=WORKERS)


def run(quick: bool = False) -> dict:
    torch.set_num_threads(1)
    root, source = real_photos_or_digits()
    repeats = 2 if quick else 5
    n = _drain(imgexp_loader(root))
    t_imgexp = median_time(lambda: _drain(imgexp_loader(root)), repeats)
    t_base_u8 = median_time(lambda: _drain(baseline_loader(root, False)), repeats)
    t_base_f32 = median_time(lambda: _drain(baseline_loader(root, True)), repeats)

    cache_ratios = []
    for _ in range(repeats):
        dm = ImageDataModule(root=str(root), image_size=SIZE, batch_size=BATCH,
                             num_workers=WORKERS, ratios=(1, 0, 0), cache="ram",
                             persistent_workers=True)
        loader = dm.train_dataloader()
        first = median_time(lambda loader=loader: _drain(loader), 1)
        second = median_time(lambda loader=loader: _drain(loader), 1)
        cache_ratios.append(first / second)
    cache_ratios.sort()
    return {
        "data": f"{source}, {n} images, {SIZE}x{SIZE}, {WORKERS} workers, batch {BATCH}",
        "imgexp images/s": round(n / t_imgexp, 1),
        "ImageFolder+v2 (uint8) images/s": round(n / t_base_u8, 1),
        "ImageFolder+v2 (float, normalised) images/s": round(n / t_base_f32, 1),
        "ratio vs uint8 baseline (goal >= 1.0)": round(t_base_u8 / t_imgexp, 2),
        "ratio vs normalised baseline": round(t_base_f32 / t_imgexp, 2),
        "cache=ram epoch 2 / epoch 1 speed-up (goal >= 5)": round(
            cache_ratios[len(cache_ratios) // 2], 1),
    }


if __name__ == "__main__":
    print(run())
