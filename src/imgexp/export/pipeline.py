"""imgexp-export's work: trace the checkpoint's classifier (uint8 images in, probabilities and
logits out) to ONNX, write the class names and config into its metadata, run the file with
onnxruntime on a few images and refuse it unless its outputs match PyTorch's."""

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from imgexp.atomic import atomic_path, write_json_atomic
from imgexp.errors import ImgexpError
from imgexp.folder_lock import hold_folder
from imgexp.models import load_model
from imgexp.models.data_config import datamodule_for, input_size, split_loader
from imgexp.models.onnx_model import (
    INPUT,
    OUTPUTS,
    ExportedClassifier,
    OnnxClassifier,
    onnx_metadata,
)

log = logging.getLogger(__name__)
FORMATS = ("onnx",)


def check_images(model, data: dict, n: int) -> tuple[torch.Tensor, str]:
    """Up to `n` images of the checkpoint's val split as the decoder gives them; random ones
    where its data are not on this machine (the comparison still holds for any input)."""
    try:
        loader = split_loader(datamodule_for(model, data), "val")
        images = torch.cat([b["image"] for _, b in zip(range(-(-n // loader.batch_size)),
                                                       loader, strict=False)])[:n]
        return images, "val-split"
    except ImgexpError as error:
        log.warning("checking on random images: %s", error)
        size = input_size(model)
        generator = torch.Generator().manual_seed(0)
        return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8,
                             generator=generator), "random"


def to_onnx(model, path: Path, opset: int) -> None:
    for name in ("onnxscript", "onnx_ir"):  # one INFO line per optimisation pass otherwise
        logging.getLogger(name).setLevel(logging.WARNING)
    graph = ExportedClassifier(model).eval()
    size = input_size(model)
    example = torch.zeros(2, 3, size, size, dtype=torch.uint8)
    with warnings.catch_warnings():  # the exporter's deprecation chatter is not the user's
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph, (example,), dynamo=True, opset_version=opset, verbose=False,
            input_names=[INPUT], output_names=list(OUTPUTS),
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    program.model.metadata_props.update(onnx_metadata(model))
    program.save(str(path))


def export_checkpoint(cfg: DictConfig) -> dict:
    if cfg.format not in FORMATS:
        raise ImgexpError(f"format={cfg.format!r} is not an option: use {FORMATS}")
    out_dir = Path(cfg.output).expanduser()
    hold_folder(out_dir, "output")
    path = out_dir / "model.onnx"
    model = load_model(cfg.ckpt_path)
    images, source = check_images(model, OmegaConf.to_container(cfg.data),
                                  cfg.export.check_images)
    with atomic_path(path) as tmp:  # a file that fails the check never appears
        to_onnx(model, tmp, cfg.export.opset)
        with torch.inference_mode():
            expected = [t.numpy() for t in ExportedClassifier(model).eval()(images)]
        got = OnnxClassifier(tmp)._run(images)
        diff = max(float(np.abs(e - g).max()) for e, g in zip(expected, got, strict=True))
        if not diff <= cfg.export.atol:
            raise ImgexpError(f"onnxruntime's outputs differ from PyTorch's by {diff:.2e} > "
                              f"export.atol={cfg.export.atol:g}: model.onnx not written "
                              "(try another export.opset)")
    report = {"path": str(path), "format": cfg.format, "ckpt_path": str(cfg.ckpt_path),
              "opset": cfg.export.opset, "classes": model.class_names,
              "image_size": input_size(model), "check_images": source,
              "n_check_images": len(images), "max_abs_diff": diff, "atol": cfg.export.atol,
              "size_mb": round(path.stat().st_size / 2**20, 2)}
    write_json_atomic(out_dir / "export.json", report)
    return report
