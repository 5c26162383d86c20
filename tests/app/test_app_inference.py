"""The app computes through the one resolver (imgexp/device.py) with the `device` and
`inference` config eval, predict and explain use: forced settings must reach the forward of
the classifier (Recognise) and of the embeddings (gallery, queries, Compare). Nothing here
asserts what `auto` resolves to on this machine."""

import numpy as np
import pytest
import torch

from helpers.app import digit_png
from helpers.config import compose_config
from imgexp.app.inference import load_classifier, load_extractor
from imgexp.app.recognise import embed_one, recognise
from imgexp.app.run import app_settings
from imgexp.app.settings import AppSettings
from imgexp.data import load_rgb
from imgexp.errors import ImgexpError

SIZE = 16  # the digits_ckpt fixture's image size


def settings(ckpt, tmp_path, precision, channels_last) -> AppSettings:
    return AppSettings(ckpt_path=str(ckpt), gallery=str(tmp_path), cache_dir=str(tmp_path),
                       device="cpu", precision=precision, channels_last=channels_last)


def watch_first_conv(network: torch.nn.Module) -> dict:
    """What the first convolution computes in: output dtype, and whether its input is NHWC."""
    seen = {}
    conv = next(m for m in network.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, args, out: seen.update(
        dtype=out.dtype, nhwc=args[0].is_contiguous(memory_format=torch.channels_last)
        and not args[0].is_contiguous()))
    return seen


CASES = [("bf16", True), ("fp32", False)]


@pytest.mark.parametrize(("precision", "channels_last"), CASES)
def test_recognise_computes_in_the_configured_precision_and_layout(
        digits_ckpt, digits_root, tmp_path, precision, channels_last):
    model, inference = load_classifier(settings(digits_ckpt, tmp_path, precision,
                                                channels_last))
    seen = watch_first_conv(model)
    result = recognise(model, load_rgb(digit_png(digits_root, "4"), SIZE), k=3,
                       unknown_threshold=0.0, inference=inference)
    assert seen["dtype"] == (torch.bfloat16 if precision == "bf16" else torch.float32)
    assert seen["nhwc"] == channels_last
    assert inference.precision == precision and isinstance(result.confidence, float)


@pytest.mark.parametrize(("precision", "channels_last"), CASES)
def test_app_embeddings_compute_in_the_configured_precision_and_layout(
        digits_ckpt, digits_root, tmp_path, precision, channels_last):
    extractor = load_extractor(settings(digits_ckpt, tmp_path, precision, channels_last))
    seen = watch_first_conv(extractor.network)
    vector = embed_one(extractor, load_rgb(digit_png(digits_root, "4"), SIZE))
    assert seen["dtype"] == (torch.bfloat16 if precision == "bf16" else torch.float32)
    assert seen["nhwc"] == channels_last
    assert vector.dtype == np.float32
    # the gallery cache is keyed by it: vectors of another precision are never mixed in
    assert f"precision={precision}" in extractor.identity


def test_bf16_recognition_agrees_with_fp32(digits_ckpt, digits_root, tmp_path):
    """Same top class; probabilities within bf16's rounding (8 mantissa bits: ~1e-2)."""
    pixels = load_rgb(digit_png(digits_root, "7"), SIZE)
    results = []
    for precision in ("fp32", "bf16"):
        model, inference = load_classifier(settings(digits_ckpt, tmp_path, precision, True))
        results.append(recognise(model, pixels, k=3, unknown_threshold=0.0,
                                 inference=inference))
    assert results[0].top[0][0] == results[1].top[0][0]
    assert results[0].confidence == pytest.approx(results[1].confidence, abs=0.05)


def test_launcher_passes_the_inference_group_to_the_page(tmp_path):
    cfg = compose_config("app", ["ckpt_path=x.ckpt", "gallery=g", "device=cpu",
                                 "inference.precision=bf16", "inference.channels_last=false"],
                         tmp_path)
    s = app_settings(cfg)
    assert (s.device, s.precision, s.channels_last) == ("cpu", "bf16", False)
    default = app_settings(compose_config("app", ["ckpt_path=x.ckpt", "gallery=g"], tmp_path))
    assert (default.device, default.precision, default.channels_last) == ("auto", "auto", True)


def test_launcher_wrong_precision_is_one_line_naming_the_key(tmp_path):
    cfg = compose_config("app", ["ckpt_path=x.ckpt", "gallery=g", "inference.precision=fp16"],
                         tmp_path)
    with pytest.raises(ImgexpError, match="inference.precision='fp16' is not an option"):
        app_settings(cfg)
