"""A trained classifier as one ONNX file, and that file run with onnxruntime in place of the
checkpoint (imgexp-predict ckpt_path=model.onnx).

The graph takes what imgexp's decoder gives: uint8 RGB, NCHW, resized to the model's
image_size; the normalisation (and everything after) is inside. Its metadata carries the class
names, the image size and the training config, so the file alone is enough to sort images.
"""

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from imgexp.data.names import check_class_names
from imgexp.errors import ImgexpError

INPUT = "images"
OUTPUTS = ("proba", "logits")


class ExportedClassifier(nn.Module):
    """uint8 images -> (class probabilities, logits): the graph that goes into the file."""

    def __init__(self, model):
        super().__init__()
        if model.is_embedding:
            raise ImgexpError("export supports softmax heads only: an embedding head's k-NN "
                              "vote needs its gallery of train images; export a softmax model")
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(images).float()
        return torch.softmax(logits, dim=-1), logits


def onnx_metadata(model) -> dict[str, str]:
    names = check_class_names(model.class_names, "the model being exported")
    return {"class_names": json.dumps(names),
            "image_size": str(int(model.config["data"]["image_size"])),
            "input": "uint8 RGB NCHW at image_size x image_size, not normalised",
            "imgexp_config": json.dumps(model.config)}


class _Head:
    kind = "classifier"  # what is_classifier() reads: the exported graph gives logits


class OnnxClassifier:
    """The exported file behind the interface inference uses: class_names, config,
    predict_proba(images) and model(images) -> logits, on uint8 NCHW torch tensors."""

    is_embedding = False
    head = _Head()

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime says a bad file its own way
            raise ImgexpError(f"{path} is not a readable ONNX model ({type(error).__name__}): "
                              "point at a file imgexp-export wrote") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "class_names" not in meta or "imgexp_config" not in meta:
            raise ImgexpError(f"{path} was not written by imgexp-export (no class names in its "
                              "metadata): export the checkpoint with imgexp-export")
        try:
            names = json.loads(meta["class_names"])
        except json.JSONDecodeError:
            raise ImgexpError(f"ONNX metadata of {path}: class_names is not JSON: export the "
                              "checkpoint again with imgexp-export") from None
        # the file runs no code, but its names become folder names
        self.class_names = check_class_names(names, f"ONNX metadata of {path}")
        self.config = json.loads(meta["imgexp_config"])

    def _run(self, images: torch.Tensor) -> list[np.ndarray]:
        return self.session.run(list(OUTPUTS), {INPUT: images.cpu().numpy()})

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._run(images)[0])

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._run(images)[1])
