"""Where, in which precision and memory layout inference computes: the one resolver of
`device=auto`, `inference.precision=auto` and channels-last for every inference path (eval,
predict, explain, select's features, the app)."""

import logging
import os
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import nn

from imgexp.errors import ImgexpError

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp32")
PRECISION_ENV = "IMGEXP_PRECISION"
# Lightning's trainer.precision -> the inference precision that computes as it does
TRAINER_PRECISIONS = {"32-true": "fp32", "32": "fp32", "64-true": "fp32", "64": "fp32",
                      "bf16-mixed": "bf16", "bf16-true": "bf16", "bf16": "bf16"}


THREADS_ENV = "IMGEXP_THREADS"


def usable_cores() -> int:
    """The cores this process may run on (a cgroup or taskset may allow fewer than the
    machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def fix_threads() -> int:
    """The CPU threads a run computes with: they set the order of its float sums, so its
    numbers. One per core this process may use (IMGEXP_THREADS=N to choose), not what a
    launcher left in OMP_NUM_THREADS (joblib's workers get cores / n_jobs): a trial of a
    joblib sweep then gives the numbers of the same command run alone."""
    value = os.environ.get(THREADS_ENV, "")
    if value and not (value.isdigit() and int(value) > 0):
        raise ImgexpError(f"{THREADS_ENV}={value!r}: give a number of threads (1, 2, ...)")
    threads = int(value) if value else usable_cores()
    torch.set_num_threads(threads)
    return threads


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def bf16_native(device: torch.device) -> bool:
    """Whether the hardware computes bf16 itself (AVX512-BF16/AMX on a CPU); elsewhere autocast
    emulates it, slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@dataclass(frozen=True)
class Inference:
    """How a network computes: `precision` is resolved (bf16 or fp32, never auto)."""

    device: torch.device
    precision: str = "fp32"
    channels_last: bool = False

    def prepare(self, network: nn.Module) -> nn.Module:
        """Eval mode, on the device, weights in the input's memory layout (in place)."""
        network.eval().to(self.device)
        return network.to(memory_format=torch.channels_last) if self.channels_last else network

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        if self.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def autocast(self) -> AbstractContextManager:
        """bf16 autocast (matmuls and convolutions in bf16, reductions kept in fp32) or off."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16,
                              enabled=self.precision == "bf16")

    def fields(self) -> dict:
        return {"device": str(self.device), "precision": self.precision,
                "channels_last": self.channels_last}


def has_depthwise(network: nn.Module) -> bool:
    """Whether `network` has depthwise convolutions (EfficientNet, MobileNet, ConvNeXt):
    oneDNN runs them slower in bf16 than in fp32 even on CPUs with native bf16."""
    return any(isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels
               for m in network.modules())


def trainer_precision(trainer_precision) -> str:
    """The inference precision of a run's `trainer.precision` (its test computed in it)."""
    value = str(trainer_precision)
    if value not in TRAINER_PRECISIONS:
        log.warning("the run trained and tested in trainer.precision=%s, which inference does "
                    "not offer: fp32 (its metrics may differ in the last digits)", value)
    return TRAINER_PRECISIONS.get(value, "fp32")


def forced_precision() -> str | None:
    """$IMGEXP_PRECISION=bf16|fp32: what `auto` resolves to wherever it applies, so the suite
    can be run in the precision this machine would not pick (.ci/run's second pass)."""
    forced = os.environ.get(PRECISION_ENV)
    if forced and forced not in PRECISIONS[1:]:
        raise ImgexpError(f"{PRECISION_ENV}={forced!r} is not an option: use bf16 or fp32 "
                          "(or unset it)")
    return forced or None


def auto_precision(device: torch.device, network: nn.Module | None = None) -> str:
    """`auto` without a run to follow, from facts only (the same on every run of a machine):
    bf16 where the hardware computes it natively and, on a CPU, the network has no depthwise
    convolution; fp32 elsewhere."""
    if not bf16_native(device):
        return "fp32"
    if device.type == "cpu" and network is not None and has_depthwise(network):
        return "fp32"
    return "bf16"


def resolve_precision(precision: str, device: torch.device, network: nn.Module | None = None,
                      key: str = "inference.precision", tested_in: str | None = None) -> str:
    """bf16 | fp32 as given; auto -> $IMGEXP_PRECISION where set, else `tested_in` (the
    precision a checkpoint's run tested in: its metrics come back as they were) where given,
    else auto_precision. Never a timing: the same command gives the same numbers."""
    if precision not in PRECISIONS:
        raise ImgexpError(f"{key}={precision!r} is not an option: use {PRECISIONS}")
    if precision == "auto":
        return forced_precision() or tested_in or auto_precision(device, network)
    if precision == "bf16" and not bf16_native(device):
        log.warning("%s=bf16 on hardware without native bf16: emulated, usually slower "
                    "than fp32 (auto would pick fp32 here)", key)
    return precision


def resolve_inference(network: nn.Module, device: str = "auto", precision: str = "auto",
                      channels_last: bool = True, key: str = "inference.precision",
                      tested_in: str | None = None) -> Inference:
    """The Inference for `network` (prepared in place: eval, device, layout)."""
    dev = resolve_device(device)
    inference = Inference(dev, resolve_precision(precision, dev, network, key, tested_in),
                          channels_last)
    inference.prepare(network)
    return inference
