"""The GPU figures issue 17 asks for, in one process run (benchmarks/gpu_check.sh starts it):
bf16-mixed vs fp32 training throughput of resnet50 and efficientnet_b0, imgexp-select's
feature extraction vs the network alone, imgexp-predict end to end, and the 2-process DDP
tests. Each measurement is its own try block: one failure is written down, the rest still
run. Figures go to $OUT/RESULTS_gpu.md (a RESULTS.md section) and are printed.

    python benchmarks/gpu_check.py [--cpu] [--quick]   (--cpu: check the plumbing without CUDA)
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
FIGURES: dict[str, object] = {}


SKIP: list[str] = []
OUT_DIR: list[Path] = []


def write_results() -> str:
    """The section so far, rewritten after each measurement: a timeout keeps what was done."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = "\n".join(f"| {k} | {json.dumps(v) if isinstance(v, dict | list) else v} |"
                     for k, v in FIGURES.items())
    section = (f"## gpu_check\n\n_{stamp}, benchmarks/gpu_check.sh_\n\n| figure | value |\n"
               f"| --- | --- |\n{rows}\n")
    (OUT_DIR[0] / "RESULTS_gpu.md").write_text(section)
    (OUT_DIR[0] / "gpu_check.json").write_text(json.dumps(FIGURES, indent=1))
    return section


def measure(name: str):
    """Run fn, keep its figures; on failure keep the error's last line instead."""
    def wrap(fn):
        if name in SKIP:
            FIGURES[f"{name}"] = "skipped (--skip)"
            return fn
        start = time.perf_counter()
        try:
            FIGURES.update(fn())
        except Exception as exc:  # noqa: BLE001 - any failure is a figure, not the end
            traceback.print_exc()
            FIGURES[f"{name}: FAILED"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        print(f"[{name}] {time.perf_counter() - start:.0f} s", flush=True)
        write_results()
        return fn
    return wrap


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_throughput(arch: str, device: torch.device, precision: str, batch: int,
                     steps: int) -> float:
    """images/s of forward + backward + AdamW step on random 224 px images."""
    import timm

    model = timm.create_model(arch, num_classes=10).to(device, memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, 224, 224, device=device).contiguous(
        memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):  # warm-up: cuDNN autotuning, allocator
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return batch * steps / (time.perf_counter() - start)


def synthetic_jpegs(n: int, folder: Path, side: int = 256) -> list[Path]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        # smooth noise compresses like a photo rather than like white noise
        small = rng.integers(0, 256, (side // 8, side // 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((side, side), Image.BILINEAR).save(
            folder / f"{i:05d}.jpg", quality=90)
    return sorted(folder.glob("*.jpg"))


def run_stage(module: str, args: list[str], timeout: int) -> str:
    out = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                         timeout=timeout, env={**os.environ, "WANDB_MODE": "disabled"})
    if out.returncode:
        raise RuntimeError(f"{module} exited {out.returncode}: "
                           + (out.stderr.strip().splitlines() or ["?"])[-1])
    return out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cpu", action="store_true", help="no CUDA: check the plumbing")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (with --cpu)")
    parser.add_argument("--skip", nargs="*", default=[],
                        help="measurements to leave out: training features predict cpu_bf16 "
                             "ddp")
    args = parser.parse_args()
    SKIP.extend(args.skip)
    out_dir = Path(os.environ.get("OUT") or tempfile.mkdtemp(prefix="gpu_check_"))
    out_dir.mkdir(parents=True, exist_ok=True)
    OUT_DIR.append(out_dir)
    device = torch.device("cpu" if args.cpu or not torch.cuda.is_available() else "cuda")
    quick = args.quick or device.type == "cpu"
    work = Path(tempfile.mkdtemp(prefix="gpu_check_work_"))
    FIGURES["device"] = (torch.cuda.get_device_name(0) if device.type == "cuda"
                         else f"cpu ({os.cpu_count()} cores), plumbing check only")
    FIGURES["versions"] = f"python {sys.version.split()[0]}, torch {torch.__version__}"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    @measure("training")
    def _training():
        figures = {}
        batch, steps = (4, 2) if quick else (128, 30)
        for arch in ("resnet50", "efficientnet_b0"):
            fp32 = train_throughput(arch, device, "fp32", batch, steps)
            bf16 = train_throughput(arch, device, "bf16", batch, steps)
            figures[f"train {arch} batch {batch}: fp32 img/s"] = round(fp32, 1)
            figures[f"train {arch} batch {batch}: bf16-mixed img/s"] = round(bf16, 1)
            figures[f"train {arch}: bf16-mixed / fp32"] = round(bf16 / fp32, 2)
        return figures

    paths = synthetic_jpegs(64 if quick else 4096, work / "images")

    @measure("features")
    def _features():
        from imgexp.features.extractor import FeatureExtractor, extract_features

        batch, workers = (16, 2) if quick else (256, 12)
        backbone = {"_target_": "imgexp.models.backbones.TimmBackbone", "name": "resnet50"}
        extractor = FeatureExtractor.from_backbone(backbone, image_size=224,
                                                   device=device.type, precision="auto")
        images = torch.randint(0, 256, (batch, 3, 224, 224), dtype=torch.uint8)
        extractor(images)  # warm-up
        start = time.perf_counter()
        for _ in range(0, len(paths), batch):
            extractor(images)
        model_only = len(paths) / (time.perf_counter() - start)
        start = time.perf_counter()
        extract_features(paths, extractor, work / "cache", recompute=True, batch_size=batch,
                         num_workers=workers, progress=False)
        pipeline = len(paths) / (time.perf_counter() - start)
        return {f"features resnet50 224 px ({len(paths)} JPEGs 256 px, {workers} workers, "
                f"precision {extractor.precision}): pipeline img/s": round(pipeline, 1),
                "features: model-only img/s": round(model_only, 1),
                "features: pipeline / model-only": round(pipeline / model_only, 2)}

    @measure("predict")
    def _predict():
        data, run = work / "data", work / "train_run"
        accel = "gpu" if device.type == "cuda" else "cpu"
        run_stage("imgexp.train", [
            f"paths.data_dir={data}", f"hydra.run.dir={run}", "logger=csv", "~augmentation",
            "~callbacks.progress_bar", "trainer.enable_progress_bar=false",
            f"trainer={accel}", "trainer.max_epochs=1",
            "data.image_size=32"], 600)
        ckpt = run / "checkpoints" / "best.ckpt"
        batch = 16 if quick else 256
        start = time.perf_counter()
        run_stage("imgexp.predict", [
            f"ckpt_path={ckpt}", f"input={work / 'images'}", f"hydra.run.dir={work / 'pred'}",
            "predict.mode=none", "predict.progress=false", f"predict.batch_size={batch}",
            f"predict.num_workers={2 if quick else 12}", f"device={device.type}"], 600)
        seconds = time.perf_counter() - start
        return {f"predict digits_cnn 32 px, {len(paths)} JPEGs, batch {batch} (incl. start-up)"
                ": img/s": round(len(paths) / seconds, 1)}

    @measure("cpu_bf16")
    def _cpu_bf16():
        # issue 16's ">= 3x on a CPU with native bf16": this host's CPU (GPU hosts are often
        # AVX512-BF16/AMX), imgexp-predict at 224 px vs a naive fp32 loop; the figures say
        # whether bf16 is native here (if not, they measure fp32 only)
        proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_predict_224",
                               *(["--quick"] if quick else [])], capture_output=True,
                              text=True, timeout=300, cwd=REPO,
                              env={**os.environ, "WANDB_MODE": "disabled",
                                   "PYTHONPATH": f"{REPO}:{os.environ.get('PYTHONPATH', '')}"})
        if proc.returncode:
            raise RuntimeError("bench_predict_224 exited "
                               f"{proc.returncode}: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
        rows = (line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
        return {f"cpu predict {key}": value for key, value in rows}

    @measure("ddp")
    def _ddp():
        # two processes with gloo on the CPUs (one GPU cannot hold two NCCL ranks): the tests
        # CI runs, with pytest when the machine has it, else the command line they test
        start = time.perf_counter()
        if importlib.util.find_spec("pytest"):
            name = "ddp tests (2 gloo processes, tests/train/test_ddp.py)"
            cmd = [sys.executable, "-m", "pytest", str(REPO / "tests" / "train" / "test_ddp.py"),
                   "-q", "-p", "no:cacheprovider", "-x"]
        else:
            name = "ddp command (2 gloo processes, digits_cnn, 2 epochs; pytest absent)"
            cmd = [sys.executable, "-m", "imgexp.train", "trainer=ddp", "trainer.accelerator=cpu",
                   "trainer.devices=2", "trainer.precision=32-true", "logger=csv",
                   "~augmentation", "~callbacks.progress_bar",
                   "trainer.enable_progress_bar=false", "trainer.max_epochs=2",
                   f"paths.data_dir={work / 'data'}", f"hydra.run.dir={work / 'ddp_run'}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=REPO,
                              env={**os.environ, "WANDB_MODE": "offline"})
        lines = (proc.stdout + proc.stderr).strip().splitlines() or ["?"]
        tail = next((x for x in reversed(lines) if "passed" in x or "failed" in x
                     or "test/acc" in x), lines[-1])
        return {name: f"exit {proc.returncode}: {tail.strip()[:200]} "
                      f"({time.perf_counter() - start:.0f} s)"}

    print("\n" + write_results())


if __name__ == "__main__":
    main()
