"""bench_predict's ImageNet-sized part: ResNet50 and EfficientNet-B0 (timm, random init: speed
does not depend on the weights) at 224 px on the real photos, in one process:

- end to end: imgexp-predict with inference.precision=auto, decode -> sorted class folders;
- the naive loop: fp32, one image at a time (open, resize, forward, copy);
- model only: the same batched forward on images already decoded, in the precision auto chose
  (the ceiling of the end-to-end figure), and in fp32 and bf16 forced (the bf16 gain or loss
  of this model on this CPU; bf16 only where native: emulated bf16 is slow and says nothing
  about a machine that has it).
"""

import resource
import time
from pathlib import Path

import torch

import imgexp.device as device
from benchmarks.common import untrained_checkpoint
from imgexp.data.dataset import ImageFiles
from imgexp.models import load_model
from imgexp.models.inference import inference_for

ARCHS = ("resnet50", "efficientnet_b0")
SIZE = 224
BATCH = 16  # predict's CPU default


def make_checkpoint(folder: Path, arch: str) -> Path:
    return untrained_checkpoint(folder / f"{arch}.ckpt",
                                [f"model/backbone={arch}", f"data.image_size={SIZE}"])


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (predict's decoding workers):
    on a shared machine, the work done, whatever share of the cores the neighbours left."""
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                          resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def model_only(ckpt: Path, images: torch.Tensor, precision: str) -> tuple[float, str, float]:
    """Images/s of the batched forward alone, the precision it ran in, and images per CPU
    second."""
    model = load_model(ckpt)
    inference = inference_for(model, "cpu", {"precision": precision, "channels_last": True})
    batches = images.split(BATCH)
    with torch.inference_mode(), inference.autocast():
        model.predict_proba(inference.inputs(batches[0]))  # warm-up: oneDNN picks kernels
        start, cpu = time.perf_counter(), cpu_seconds()
        for batch in batches:
            model.predict_proba(inference.inputs(batch))
    return (len(images) / (time.perf_counter() - start), inference.precision,
            len(images) / (cpu_seconds() - cpu))


def run(tmp: Path, source: Path, paths: list[Path], quick: bool, project, per_image_loop,
        workers: int) -> dict:
    """`project(ckpt, folder, output, workers, precision, channels_last)` and
    `per_image_loop(ckpt, paths, output)` are bench_predict's two contenders."""
    n_model, n_naive = (32, 10) if quick else (256, 200)
    images = torch.stack([ImageFiles(paths[:n_model], SIZE)[i]["image"]
                          for i in range(min(n_model, len(paths)))])
    native = device.bf16_native(torch.device("cpu"))
    figures = {"224px data": f"{len(paths)} photos end to end, {n_naive} in the naive loop, "
                             f"{len(images)} decoded for model-only",
               "224px threads": torch.get_num_threads(), "CPU has native bf16": native}
    for arch in ARCHS:
        ckpt = make_checkpoint(tmp, arch)
        start, cpu = time.perf_counter(), cpu_seconds()
        summary = project(ckpt, source, tmp / f"{arch}_project", workers, "auto", True)
        e2e = len(paths) / (time.perf_counter() - start)
        e2e_cpu = len(paths) / (cpu_seconds() - cpu)
        start = time.perf_counter()
        per_image_loop(ckpt, paths[:n_naive], tmp / f"{arch}_loop")
        naive = n_naive / (time.perf_counter() - start)
        auto, chosen, auto_cpu = model_only(ckpt, images, "auto")
        tag = f"{arch} {SIZE}px"
        figures |= {f"{tag} precision auto chose": chosen,
                    f"{tag} end-to-end images/s": round(e2e, 1),
                    f"{tag} predict's summary images/s": summary["images_per_s"],
                    f"{tag} naive fp32 per-image loop images/s": round(naive, 1),
                    f"{tag} speedup vs naive loop (goal >= 3 with native bf16)":
                        round(e2e / naive, 2),
                    f"{tag} model-only images/s ({chosen})": round(auto, 1),
                    f"{tag} end-to-end / model-only (goal >= 0.8)": round(e2e / auto, 2),
                    # the same ratio in images per CPU second: what the pipeline adds per
                    # image, robust to neighbours taking the cores at different moments
                    f"{tag} end-to-end / model-only per CPU second": round(e2e_cpu / auto_cpu,
                                                                           2)}
        # emulated bf16 (no native support) is slow and says nothing about a machine that has it
        forced = ("fp32", "bf16") if native else ("fp32",)
        rates = {p: model_only(ckpt, images, p)[0] for p in forced}
        figures |= {f"{tag} model-only images/s {p} forced": round(r, 1)
                    for p, r in rates.items()}
        if "bf16" in rates:
            figures[f"{tag} bf16 / fp32 model-only"] = round(rates["bf16"] / rates["fp32"], 2)
    return figures
