"""Where, in which precision and memory layout inference computes: the one resolver of
`device=auto`, `inference.precision=auto` and channels-last for every inference path (eval,
predict, explain, select's features, the app)."""

import hashlib
import logging
import os
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import nn

from imgexp.errors import ImgexpError

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp32")
PRECISION_ENV = "IMGEXP_PRECISION"
# bf16 must be this much faster than fp32 to be chosen: below it the timing noise decides
MIN_SPEEDUP = 1.1
MEASURE_BATCH = 8
# (network structure, input size, device, layout, threads) -> seconds per batch measured: a
# stage, the app or the tests resolving the same network again do not measure again
_MEASURED: dict[tuple, str] = {}


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


def resolve_precision(precision: str, device: torch.device, measure=None,
                      key: str = "inference.precision") -> str:
    """bf16 | fp32 as given; auto -> bf16 only where the hardware computes it natively and
    `measure()` (-> {"fp32": s, "bf16": s}, once per network) finds it faster: depthwise
    convolutions (EfficientNet) can be slower in bf16 even there. $IMGEXP_PRECISION=bf16|fp32
    decides `auto` instead (to run the tests either way)."""
    if precision not in PRECISIONS:
        raise ImgexpError(f"{key}={precision!r} is not an option: use {PRECISIONS}")
    if precision != "auto":
        if precision == "bf16" and not bf16_native(device):
            log.warning("%s=bf16 on hardware without native bf16: emulated, usually slower "
                        "than fp32 (auto would pick fp32 here)", key)
        return precision
    forced = os.environ.get(PRECISION_ENV)
    if forced:
        if forced not in PRECISIONS[1:]:
            raise ImgexpError(f"{PRECISION_ENV}={forced!r} is not an option: use bf16 or fp32 "
                              "(or unset it)")
        return forced
    if not bf16_native(device):
        return "fp32"
    if measure is None:
        return "bf16"
    seconds = measure()
    chosen = "bf16" if seconds["fp32"] >= MIN_SPEEDUP * seconds["bf16"] else "fp32"
    log.info("precision=auto: %s (a batch in fp32 %.3f s, bf16 %.3f s)", chosen,
             seconds["fp32"], seconds["bf16"])
    return chosen


def time_precisions(network: nn.Module, example: torch.Tensor, rounds: int = 3) -> dict:
    """Seconds per forward of `example` in fp32 and in bf16 autocast, the best of `rounds`
    interleaved (a busy neighbour slows both alike); a first call each warms oneDNN up."""
    best = {"fp32": float("inf"), "bf16": float("inf")}
    with torch.inference_mode():
        for round_ in range(rounds + 1):
            for precision in best:
                with Inference(example.device, precision).autocast():
                    start = time.perf_counter()
                    network(example)
                    if round_:
                        best[precision] = min(best[precision], time.perf_counter() - start)
    return best


def _structure_key(network: nn.Module) -> str:
    shapes = ";".join(f"{n}:{tuple(p.shape)}" for n, p in network.named_parameters())
    return f"{type(network).__name__}|{hashlib.sha1(shapes.encode()).hexdigest()}"


def resolve_inference(network: nn.Module, image_size: int, device: str = "auto",
                      precision: str = "auto", channels_last: bool = True,
                      key: str = "inference.precision") -> Inference:
    """The Inference for `network` (prepared in place: eval, device, layout). `auto`
    measures `network` on a uint8 batch of `image_size` images once per process."""
    dev = resolve_device(device)
    layout_only = Inference(dev, "fp32", channels_last)
    layout_only.prepare(network)

    def measure() -> dict:
        cache_key = (_structure_key(network), image_size, str(dev), channels_last,
                     torch.get_num_threads())
        if cache_key not in _MEASURED:
            example = torch.randint(0, 256, (MEASURE_BATCH, 3, image_size, image_size),
                                    dtype=torch.uint8)
            _MEASURED[cache_key] = time_precisions(network, layout_only.inputs(example))
        return _MEASURED[cache_key]

    return Inference(dev, resolve_precision(precision, dev, measure, key), channels_last)
