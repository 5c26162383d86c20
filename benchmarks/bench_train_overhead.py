"""train_overhead: the same SimpleCNN on the same in-memory batches for N steps: a plain
PyTorch loop vs imgexp's LightningModule + Trainer (metrics, logging, callbacks included),
with imgexp's progress bar on, as users run it.

The two are timed alternately (median of pairs): an earlier version timed every plain repeat,
then every imgexp one, and reported imgexp 1.20x *faster* than the plain loop, which was the
machine's load changing between the two blocks (other jobs on 2 shared cores), not Lightning.
"""

import statistics
import tempfile
import time

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from imgexp.models import build_model
from imgexp.models.backbones import SimpleCNN
from imgexp.models.heads import SoftmaxHead
from imgexp.models.module import IMAGENET_MEAN, IMAGENET_STD
from imgexp.training.progress import progress_bar

SIZE, BATCH, CLASSES = 32, 64, 10
CFG = OmegaConf.create({
    "model": {"backbone": {"_target_": "imgexp.models.backbones.SimpleCNN",
                           "channels": [32, 64, 128], "image_size": SIZE, "batch_norm": True},
              "head": {"_target_": "imgexp.models.heads.SoftmaxHead"},
              "loss": {"_target_": "imgexp.models.losses.CrossEntropyLoss"},
              "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "channels_last": False},
    "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3},
    "scheduler": None,
})


def make_batches(steps: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [{"image": torch.randint(0, 256, (BATCH, 3, SIZE, SIZE), dtype=torch.uint8,
                                    generator=g),
             "label": torch.randint(0, CLASSES, (BATCH,), generator=g), "skipped": []}
            for _ in range(steps)]


def plain_loop(batches: list[dict]) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(SimpleCNN(channels=[32, 64, 128], image_size=SIZE, batch_norm=True),
                        SoftmaxHead(128, CLASSES))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
    net.train()
    for batch in batches:
        x = (batch["image"].float() - mean) / std
        loss = nn.functional.cross_entropy(net(x), batch["label"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def imgexp_loop(batches: list[dict]) -> None:
    torch.manual_seed(0)
    module = build_model(CFG, [str(i) for i in range(CLASSES)])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=CSVLogger(tmp),
                            enable_checkpointing=False, callbacks=[progress_bar()],
                            enable_model_summary=False, limit_val_batches=0,
                            log_every_n_steps=10)
        # batch_size=None: the loader hands over the prepared batches as they are
        trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))


def run(quick: bool = False) -> dict:
    torch.set_num_threads(2)
    steps, repeats = (60, 3) if quick else (200, 5)
    batches = make_batches(steps)
    plain_loop(batches[:5])  # warm-up (allocator, kernels)
    imgexp_loop(batches[:5])
    times: dict = {plain_loop: [], imgexp_loop: []}
    for i in range(repeats):
        for loop in (plain_loop, imgexp_loop)[:: 1 if i % 2 else -1]:  # alternating
            start = time.perf_counter()
            loop(batches)
            times[loop].append(time.perf_counter() - start)
    t_plain, t_imgexp = (statistics.median(times[f]) for f in (plain_loop, imgexp_loop))
    return {
        "setup": f"SimpleCNN [32,64,128] {SIZE}px, batch {BATCH}, {steps} steps, progress bar "
                 f"on, median of {repeats} alternating runs",
        "plain PyTorch steps/s": round(steps / t_plain, 1),
        "imgexp Lightning steps/s": round(steps / t_imgexp, 1),
        "throughput ratio imgexp / plain (goal >= 0.90)": round(t_plain / t_imgexp, 3),
    }


if __name__ == "__main__":
    print(run())
