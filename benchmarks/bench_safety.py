"""What the safety and reproducibility guarantees cost (issues 27 and 28), each against what
it replaced, alternating in one process:

- a checkpoint saved through imgexp's AtomicCheckpointIO (beside its name, fsync, rename) vs
  Lightning's own save (fsspec: a temporary file moved into place), for a small CNN's and a
  ResNet50-sized checkpoint;
- a checkpoint read as data only (imgexp's safe_load: torch's weights-only unpickler) vs the
  unrestricted torch.load it replaced;
- the per-batch reseeding that makes a resumed run end as an uninterrupted one
  (SeedEachBatch), against one training step of the default recipe (digits_cnn);
- taking and releasing a stage's folder lock.
"""

import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace


def _alternate(a, b, repeats: int) -> tuple[float, float]:
    """Median seconds of a() and b(), run in turns so load on the machine hits both alike."""
    ta, tb = [], []
    for _ in range(repeats):
        for fn, times in ((a, ta), (b, tb)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(ta), statistics.median(tb)


def _checkpoint(params: int) -> dict:
    import torch

    return {"state_dict": {"w": torch.randn(params)}, "epoch": 3, "global_step": 120,
            "imgexp": {"class_names": [str(i) for i in range(10)], "config": {"model": {}}}}


def _save_figures(folder: Path, repeats: int, sizes: dict) -> dict:
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from imgexp.training.checkpoint_io import AtomicCheckpointIO

    figures = {}
    for label, params in sizes.items():
        ckpt = _checkpoint(params)
        ours, theirs = _alternate(
            lambda c=ckpt: AtomicCheckpointIO().save_checkpoint(c, folder / "ours.ckpt"),
            lambda c=ckpt: TorchCheckpointIO().save_checkpoint(c, folder / "lightning.ckpt"),
            repeats)
        figures[f"save {label}: imgexp atomic ms / Lightning ms"] = \
            f"{ours * 1e3:.1f} / {theirs * 1e3:.1f}"
        figures[f"save {label}: ratio imgexp / Lightning"] = round(ours / theirs, 2)
    return figures


def _load_figures(folder: Path, repeats: int) -> dict:
    import torch

    from imgexp.models.safe_load import safe_load

    path = folder / "lightning.ckpt"
    ours, theirs = _alternate(lambda: safe_load(path),
                              lambda: torch.load(path, map_location="cpu", weights_only=False),
                              repeats)
    return {"load (last size): safe_load ms / torch.load unrestricted ms":
            f"{ours * 1e3:.1f} / {theirs * 1e3:.1f}",
            "load: ratio safe / unrestricted": round(ours / theirs, 2)}


def _seed_figures(repeats: int) -> dict:
    import torch

    from imgexp.models.backbones import SimpleCNN
    from imgexp.training.batch_seed import SeedEachBatch

    trainer = SimpleNamespace(current_epoch=1, global_rank=0)
    seeder = SeedEachBatch(42)
    calls = 1000
    start = time.perf_counter()
    for i in range(calls):
        seeder.on_train_batch_start(trainer, None, None, i)
    per_call = (time.perf_counter() - start) / calls
    # one step of the default recipe's network (digits_cnn: SimpleCNN at 32 px, batch 64)
    net = SimpleCNN(channels=[32, 64, 128], dropout=0.25, image_size=32)
    opt = torch.optim.Adam(net.parameters())
    images = torch.randn(64, 3, 32, 32)

    def step():
        opt.zero_grad()
        net(images).float().pow(2).mean().backward()
        opt.step()

    step_s = statistics.median(_time(step) for _ in range(repeats))
    return {"reseed per batch (SeedEachBatch) us": round(per_call * 1e6, 1),
            "one digits_cnn train step ms": round(step_s * 1e3, 1),
            "reseed share of a step (%)": round(100 * per_call / step_s, 2)}


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _lock_figures(folder: Path) -> dict:
    from imgexp import folder_lock

    folder_lock._open_scope()
    calls = 200
    start = time.perf_counter()
    for i in range(calls):
        folder_lock.hold_folder(folder / f"run{i}", "bench")
    folder_lock.release_all()
    per_call = (time.perf_counter() - start) / calls
    return {"folder lock take + release us": round(per_call * 1e6, 1)}


def run(quick: bool = False) -> dict:
    repeats = 5 if quick else 15
    sizes = {"0.9 MB (digits_cnn)": 230_000, "94 MB (ResNet50)": 23_500_000}
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        folder = Path(tmp)
        figures = {"setup": f"CPU, median of {repeats} alternating runs; checkpoints written in "
                            "the working folder's file system"}
        figures |= _save_figures(folder, repeats, sizes)
        figures |= _load_figures(folder, repeats)
        figures |= _seed_figures(repeats)
        figures |= _lock_figures(folder)
    return figures


if __name__ == "__main__":
    print(run())
