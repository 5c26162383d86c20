"""end_to_end: `imgexp-train` run as a user runs it (a fresh process, default console output,
progress bar on) vs a hand-written PyTorch script (also a fresh process) that trains the same
network with the same optimiser, schedule, epochs, batch size, image size, threads and split:
it decodes every image once into a tensor, trains, validates each epoch, keeps the best
weights and tests them. Both sides alternate in one run (medians), per setting.

imgexp's time is broken down by benchmarks/e2e_timing.py, one extra callback that reads the
clock in Lightning's hooks. `python -m benchmarks.bench_end_to_end --plain ...` is the script.
`--before SRC` adds a third side, imgexp from another checkout's src/ (e.g. main's), in the same
alternation: a before/after comparison under the same load.
"""

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from benchmarks.common import REAL_PHOTOS, REPO

SEED, LR, BATCH, THREADS = 42, 3e-3, 64, 1  # the digits_cnn recipe (conf/experiment)


# -- the hand-written script ------------------------------------------------------------------
def plain(split_csv: Path, root: Path, size: int, epochs: int, out: Path, launched: float) -> None:
    import numpy as np
    import torch
    from PIL import Image
    from torch import nn

    t = {"imports_done": time.time()}
    torch.manual_seed(SEED)
    rows = list(csv.DictReader(split_csv.open()))
    classes = sorted({r["label"] for r in rows})

    def load(split):
        rs = [r for r in rows if r["split"] == split]
        x = np.stack([np.asarray(Image.open(root / r["path"]).convert("RGB").resize(
            (size, size), Image.BILINEAR)) for r in rs])
        y = [classes.index(r["label"]) for r in rs]
        return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.tensor(y)

    data = {s: load(s) for s in ("train", "val", "test")}
    t["data_loaded"] = time.time()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255

    def block(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, padding="same"), nn.BatchNorm2d(c_out), nn.ReLU(),
                nn.MaxPool2d(2)]

    net = nn.Sequential(*block(3, 32), *block(32, 64), *block(64, 128), nn.Flatten(),
                        nn.Linear(128 * (size // 8) ** 2, 128), nn.ReLU(), nn.Dropout(0.25),
                        nn.Linear(128, len(classes)))
    x_train, y_train = data["train"]
    steps = len(x_train) // BATCH  # drop_last, as imgexp's train loader
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=epochs * steps,
                                                pct_start=0.3, div_factor=25.0,
                                                final_div_factor=1e4)

    def accuracy(split):
        x, y = data[split]
        net.eval()
        with torch.inference_mode():
            pred = torch.cat([net((x[i:i + BATCH].float() - mean) / std).argmax(1)
                              for i in range(0, len(x), BATCH)])
        return float((pred == y).float().mean())

    best, best_state = -1.0, None
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(x_train))
        for i in range(steps):
            idx = order[i * BATCH:(i + 1) * BATCH]
            loss = nn.functional.cross_entropy(net((x_train[idx].float() - mean) / std),
                                               y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        val = accuracy("val")
        if val > best:
            best, best_state = val, {k: v.clone() for k, v in net.state_dict().items()}
    t["trained"] = time.time()
    net.load_state_dict(best_state)
    t["test_acc"] = accuracy("test")
    t["end"] = time.time()
    t["launched"] = launched
    out.write_text(json.dumps(t))


# -- the two sides as processes ---------------------------------------------------------------
def _env(timing: Path, src: Path = REPO / "src") -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(THREADS), "WANDB_MODE": "offline",
            "PYTHONPATH": os.pathsep.join([str(src), str(REPO)]),
            "IMGEXP_E2E_TIMING": str(timing)}


def run_imgexp(setting: dict, epochs: int, work: Path, src: Path = REPO / "src") -> dict:
    run_dir, timing = work / f"run{time.time_ns()}", work / "timing.json"
    args = [sys.executable, "-m", "imgexp.train", *setting["overrides"],
            f"data.image_size={setting['size']}", f"trainer.max_epochs={epochs}",
            "augmentation=none", f"hydra.run.dir={run_dir}",
            "+callbacks.e2e_timing._target_=benchmarks.e2e_timing.Timestamps"]
    launched = time.time()
    subprocess.run(args, check=True, capture_output=True, env=_env(timing, src), cwd=work)
    end = time.time()
    t = json.loads(timing.read_text())
    first_epoch, val = t["train_epochs"][0][0], sum(b - a for a, b in t["val"])
    loop = t["fit_end"] - first_epoch
    return {"wall": end - launched,
            "acc": json.loads((run_dir / "metrics.json").read_text())["test/acc"],
            "breakdown": {
                "start-up (imports, config, data scan, model)": t["callback_init"] - launched,
                "loggers, W&B, trainer, sanity val, workers": first_epoch - t["callback_init"],
                "data (waiting for batches)": t["data_wait_s"],
                "train steps": t["train_steps_s"],
                "validation": val,
                "epoch ends (checkpoints, metric logs)":
                    loop - t["data_wait_s"] - t["train_steps_s"] - val,
                "test (restore best + test)": t["test_end"] - t["fit_end"],
                "writing outputs, W&B finish, exit": end - t["test_end"]}}


def run_plain(setting: dict, epochs: int, work: Path, split_csv: Path) -> dict:
    out = work / "plain.json"
    launched = time.time()
    subprocess.run([sys.executable, "-m", "benchmarks.bench_end_to_end", "--plain",
                    str(split_csv), str(setting["root"]), str(setting["size"]), str(epochs),
                    str(out), str(launched)], check=True, capture_output=True,
                   env=_env(work / "unused.json"), cwd=REPO)
    end = time.time()
    t = json.loads(out.read_text())
    return {"wall": end - launched, "acc": t["test_acc"],
            "breakdown": {"imports": t["imports_done"] - launched,
                          "decode all images": t["data_loaded"] - t["imports_done"],
                          "train + val": t["trained"] - t["data_loaded"],
                          "test + exit": end - t["trained"]}}


def settings(quick: bool) -> list[dict]:
    from imgexp.data.digits import ensure_digits

    digits = ensure_digits(REPO / "data" / "digits")
    out = [{"name": "digits 32px", "root": digits, "size": 32,
            "overrides": [f"data.root={digits}"]}]
    if REAL_PHOTOS.is_dir():
        photos = ["data=folder", f"data.root={REAL_PHOTOS}"]
        out.insert(0, {"name": "sign photos 32px", "root": REAL_PHOTOS, "size": 32,
                       "overrides": photos})
        if not quick:
            out.insert(1, {"name": "sign photos 64px", "root": REAL_PHOTOS, "size": 64,
                           "overrides": photos})
    return out


def split_of(setting: dict, path: Path) -> Path:
    """The split imgexp draws (same seed and ratios), for the plain script to use too."""
    from imgexp.data.datamodule import ImageDataModule

    dm = ImageDataModule(root=str(setting["root"]), split_seed=SEED)
    dm.split_table().to_csv(path, index=False)
    return path


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def run(quick: bool = False, epochs: int | None = None, repeats: int | None = None,
        before: Path | None = None) -> dict:
    epochs, repeats = epochs or (2 if quick else 5), repeats or (1 if quick else 3)
    load = os.getloadavg()[0]
    figures = {"setup": f"SimpleCNN [32,64,128], Adam lr {LR} + OneCycle, batch {BATCH}, "
                        f"{epochs} epochs, no augmentation, {THREADS} thread(s) "
                        f"(OMP_NUM_THREADS), median of {repeats} alternating runs; "
                        f"{os.cpu_count()} cores, load average {load:.1f} at start"}
    results: dict[str, dict[str, list]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cases = [(s, split_of(s, work / f"split{i}.csv")) for i, s in enumerate(settings(quick))]
        for rep in range(repeats):
            for setting, split in cases:
                sides = [("imgexp", partial(run_imgexp, setting, epochs, work)),
                         ("plain", partial(run_plain, setting, epochs, work, split))]
                if before:
                    sides.insert(1, ("imgexp before", partial(run_imgexp, setting, epochs,
                                                              work, before)))
                for side, fn in sides[::-1] if rep % 2 else sides:  # alternating who goes first
                    results.setdefault(setting["name"], {}).setdefault(side, []).append(fn())
    for name, sides in results.items():
        im, pl = sides["imgexp"], sides["plain"]
        figures[f"{name}: imgexp / plain wall (goal <= 1.3)"] = round(
            _median(im, "wall") / _median(pl, "wall"), 2)
        figures[f"{name}: wall s imgexp, plain"] = [round(_median(im, "wall"), 1),
                                                    round(_median(pl, "wall"), 1)]
        figures[f"{name}: test acc imgexp, plain"] = [round(_median(im, "acc"), 4),
                                                      round(_median(pl, "acc"), 4)]
        if before:
            old = sides["imgexp before"]
            figures[f"{name}: before / plain wall, before wall s, before test acc"] = [
                round(_median(old, "wall") / _median(pl, "wall"), 2),
                round(_median(old, "wall"), 1), round(_median(old, "acc"), 4)]
        for side, runs in sides.items():
            figures[f"{name}: {side} breakdown s"] = {
                k: round(statistics.median(r["breakdown"][k] for r in runs), 1)
                for k in runs[0]["breakdown"]}
    figures["load average at end"] = round(os.getloadavg()[0], 1)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--plain", nargs=6, metavar=("SPLIT", "ROOT", "SIZE", "EPOCHS", "OUT",
                                                     "LAUNCHED"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--before", type=Path, help="another checkout's src/ as a third side")
    args = parser.parse_args()
    if args.plain:
        split, root, size, epochs, out, launched = args.plain
        plain(Path(split), Path(root), int(size), int(epochs), Path(out), float(launched))
    else:
        print(json.dumps(run(args.quick, args.epochs, args.repeats, args.before), indent=1))
