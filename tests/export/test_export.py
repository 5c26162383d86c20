"""imgexp-export format=onnx, and imgexp-predict on the file it writes."""

import json
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest

from helpers.config import compose_config
from imgexp.errors import ImgexpError
from imgexp.export.pipeline import export_checkpoint
from imgexp.models.onnx_model import OnnxClassifier
from imgexp.predict.pipeline import predict_folder


def export_config(ckpt, out, *overrides):
    return compose_config("export", [f"ckpt_path={ckpt}", f"output={out}", *overrides],
                          out / "run")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, digits_ckpt):
    out = tmp_path_factory.mktemp("export")
    return export_checkpoint(export_config(digits_ckpt, out, "export.check_images=5"))


def test_export_writes_a_checked_onnx_with_class_names(exported):
    meta = {p.key: p.value for p in onnx.load(exported["path"]).metadata_props}
    assert json.loads(meta["class_names"]) == [str(d) for d in range(10)]
    assert meta["image_size"] == "16"
    assert exported["n_check_images"] == 5 and exported["check_images"] == "val-split"
    assert exported["max_abs_diff"] <= 1e-4  # the fp32 bar
    assert json.loads((Path(exported["path"]).parent / "export.json").read_text()) == exported


def test_predict_with_the_onnx_file_sorts_like_the_checkpoint(tmp_path, exported, digits_ckpt,
                                                             digits_root):
    inputs = tmp_path / "in"
    for label in ("1", "8"):  # a pair the small model confuses: both class folders and _unknown
        (inputs / label).mkdir(parents=True)
        for p in sorted((digits_root / label).glob("*.png"))[:25]:
            (inputs / label / p.name).write_bytes(p.read_bytes())
    tables, summaries = {}, {}
    for name, ckpt in (("torch", digits_ckpt), ("onnx", exported["path"])):
        out = tmp_path / name
        cfg = compose_config("predict", [f"ckpt_path={ckpt}", f"input={inputs}", f"output={out}",
                                         "predict.num_workers=0", "device=cpu",
                                         "inference.precision=fp32", "predict.unknown_threshold=0.9",
                                         "predict.progress=false"], tmp_path / f"run_{name}")
        predict_folder(cfg)
        tables[name] = pd.read_csv(out / "predictions.csv")
        summaries[name] = json.loads((out / "summary.json").read_text())
        tables[name]["sorted_files"] = [sorted(p.relative_to(out).as_posix()
                                               for p in out.rglob("*.png"))] * len(tables[name])
    torch_table, onnx_table = tables["torch"], tables["onnx"]
    assert summaries["onnx"]["runtime"] == "onnxruntime"
    assert summaries["torch"]["runtime"] == "torch"
    assert 0 < torch_table["unknown"].sum() < len(torch_table)  # the threshold matters here
    for column in ("path", "predicted", "unknown", "destination", "sorted_files"):
        assert torch_table[column].tolist() == onnx_table[column].tolist(), column
    np.testing.assert_allclose(onnx_table["confidence"], torch_table["confidence"], atol=1e-4)


def test_a_mismatch_beyond_atol_writes_no_model(tmp_path, digits_ckpt, monkeypatch):
    """The check is live: outputs off by 1e-3 are refused and no model.onnx is left."""
    real_run = OnnxClassifier._run
    monkeypatch.setattr(OnnxClassifier, "_run",
                        lambda self, images: [a + 1e-3 for a in real_run(self, images)])
    with pytest.raises(ImgexpError, match="differ from PyTorch's by 1.00e-03 > export.atol"):
        export_checkpoint(export_config(digits_ckpt, tmp_path, "export.check_images=2"))
    assert not list(tmp_path.glob("*.onnx"))


def test_an_unknown_format_is_one_line(tmp_path, digits_ckpt):
    with pytest.raises(ImgexpError, match="format='tflite' is not an option"):
        export_checkpoint(export_config(digits_ckpt, tmp_path, "format=tflite"))


def test_predict_on_a_file_that_is_not_onnx_is_one_line(tmp_path, digits_root):
    bad = tmp_path / "model.onnx"
    bad.write_text("not a model\n")
    cfg = compose_config("predict", [f"ckpt_path={bad}", f"input={digits_root / '1'}",
                                     f"output={tmp_path / 'out'}"], tmp_path / "run")
    with pytest.raises(ImgexpError, match="is not a readable ONNX model"):
        predict_folder(cfg)


def test_an_onnx_model_checks_the_precision_and_says_bf16_does_not_apply(exported, caplog):
    # the .onnx path ignored inference.precision (any value ran, fp32) without a word
    from imgexp.models.inference import load_for_inference

    with pytest.raises(ImgexpError, match="inference.precision='fp16'"):
        load_for_inference(exported["path"], "auto", {"precision": "fp16"})
    with caplog.at_level("WARNING"):
        _, inference = load_for_inference(exported["path"], "auto", {"precision": "bf16"})
    assert "runs in fp32" in caplog.text and inference.fields()["precision"] == "fp32"
