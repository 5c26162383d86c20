"""Where and in which precision a stage computes: the one resolver of `device=auto` and
`precision=auto` (eval, predict, select's features, the app)."""

import os

import torch

from imgexp.errors import ImgexpError

PRECISIONS = ("auto", "bf16", "fp32")
PRECISION_ENV = "IMGEXP_PRECISION"


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto -> bf16 where the hardware computes it natively (else it is slower than fp32);
    $IMGEXP_PRECISION=bf16|fp32 decides `auto` instead (to run the tests either way)."""
    if precision not in PRECISIONS:
        raise ImgexpError(f"select.precision={precision!r} is not an option: use {PRECISIONS}")
    if precision != "auto":
        return precision
    forced = os.environ.get(PRECISION_ENV)
    if forced:
        if forced not in PRECISIONS[1:]:
            raise ImgexpError(f"{PRECISION_ENV}={forced!r} is not an option: use bf16 or fp32 "
                              "(or unset it)")
        return forced
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
