"""Hostile names, paths and image sizes (issue 28, items 2, 5 and 7).

A class name becomes a folder name, so each kind of bad name is fed through each way a name
enters (class folders, a manifest's labels, data.class_map, a checkpoint's or an ONNX file's
metadata, the model being exported); relative paths a stage joins onto a folder it writes to
(select's export, prepare's quarantine log, predict's class folders behind a symlink) must stay
inside it; a decompression bomb is refused by every stage's decoder. Each case asserts a
one-line ImgexpError (or the stage's unreadable-image rule), nothing written outside the output
folder and sources byte-identical.
"""

import json
import os
import signal
import subprocess
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.config import compose_config
from helpers.images import class_folders
from imgexp.data import ImageDataModule
from imgexp.errors import ImgexpError

# every kind of bad class name; "absolute" is filled in with a folder inside the test's tmp_path
BAD_NAMES = {
    "parent": "../../escaped", "absolute": None, "separator": "a/b", "backslash": "a\\b",
    "dotdot": "..", "dot": ".", "hidden": ".hidden", "dash": "-rf", "nul": "a\x00b",
    "newline": "a\nb", "tab": "a\tb", "empty": "", "con": "CON", "nul_device": "nul.txt",
    "com1": "com1", "lpt9": "LPT9.png", "too_long": "x" * 256, "c1_control": "a\x85b",
    "non_utf8": "a\udcffb",  # the bytes a\xffb as Python reads a file name
}
# the kinds a folder on Linux can be named (no "/", no NUL; dot-folders are skipped as hidden)
FOLDER_KINDS = ["backslash", "dash", "newline", "con", "nul_device", "com1", "non_utf8"]
# a sample of kinds fed through the slower entries (a model is loaded each time)
MODEL_KINDS = ["parent", "absolute", "separator", "dotdot", "dash", "con"]
BAD_LIMIT = "10000"  # IMGEXP_MAX_IMAGE_PIXELS in the bomb tests: a 200x200 image is over it


def bad_name(kind: str, tmp_path: Path) -> str:
    return str(tmp_path / "abs_escape") if kind == "absolute" else BAD_NAMES[kind]


def snapshot(folder: Path, *skip: Path) -> dict[str, bytes | str]:
    """Every path under `folder` (bytes of files) but those under `skip`: compared before and
    after, it shows both that nothing was written outside the output and that sources kept
    their bytes."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if any(p == s or s in p.parents for s in skip):
            continue
        out[p.relative_to(folder).as_posix()] = (
            "link" if p.is_symlink() else p.read_bytes() if p.is_file() else "dir")
    return out


def assert_one_line(error: pytest.ExceptionInfo, *expected: str) -> None:
    message = str(error.value)
    assert error.type is ImgexpError and "\n" not in message and "Traceback" not in message
    for text in expected:
        assert text in message, message


# -- names entering through the data: class folders, manifest labels, data.class_map ---------
@pytest.mark.parametrize("kind", list(BAD_NAMES))
def test_class_map_value_is_refused(kind, tmp_path):
    root = class_folders(tmp_path / "data", {"a": 3, "b": 3})
    before = snapshot(tmp_path)
    name = bad_name(kind, tmp_path)
    with pytest.raises(Exception) as error:
        ImageDataModule(root=str(root), image_size=16, class_map={"a": name}).resolve()
    assert_one_line(error, "data.class_map", repr(name))
    assert snapshot(tmp_path) == before


# a csv holds no NUL, and pandas writes no non-UTF-8 text
@pytest.mark.parametrize("kind", [k for k in BAD_NAMES if k not in ("nul", "non_utf8")])
def test_manifest_label_is_refused(kind, tmp_path):
    root = class_folders(tmp_path / "data", {"a": 3, "b": 3})
    name = bad_name(kind, tmp_path)
    rows = [(f"a/{i}.png", name, "train") for i in range(3)] + \
           [(f"b/{i}.png", "b", s) for i, s in enumerate(("train", "val", "test"))]
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows, columns=["path", "label", "split"]).to_csv(manifest, index=False)
    before = snapshot(tmp_path)
    with pytest.raises(Exception) as error:
        ImageDataModule(manifest=str(manifest), root=str(root), image_size=16).resolve()
    assert_one_line(error, f"manifest {manifest}", repr(name))
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", FOLDER_KINDS)
def test_class_folder_name_is_refused_by_train_and_prepare(kind, tmp_path):
    from imgexp.prepare.pipeline import run_prepare

    name = bad_name(kind, tmp_path)
    root = class_folders(tmp_path / "data", {name: 3, "b": 3})
    run_dir = tmp_path / "prepare_run"
    before = snapshot(tmp_path)
    with pytest.raises(Exception) as error:
        ImageDataModule(root=str(root), image_size=16).resolve()
    assert_one_line(error, "class folders", repr(name))
    cfg = compose_config("prepare", [f"data.root={root}", "prepare.progress=false",
                                     "prepare.workers=1"], run_dir)
    with pytest.raises(Exception) as error:
        run_prepare(cfg)
    assert_one_line(error, "class folders", repr(name))
    assert snapshot(tmp_path, run_dir) == before


# -- names entering through a model: checkpoint, ONNX metadata, export --------------------------
def predict_inputs(tmp_path: Path, digits_root: Path, n: int = 3) -> Path:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for p in sorted((digits_root / "7").glob("*.png"))[:n]:
        (inputs / p.name).write_bytes(p.read_bytes())
    return inputs


def predict_config(tmp_path: Path, ckpt: Path, inputs: Path, output: Path, *extra: str):
    return compose_config("predict", [f"ckpt_path={ckpt}", f"input={inputs}", f"output={output}",
                                      "predict.num_workers=0", "device=cpu",
                                      "predict.progress=false", "predict.unknown_threshold=null",
                                      *extra], tmp_path / "run")


def crafted_checkpoint(digits_ckpt: Path, names, path: Path) -> Path:
    ckpt = torch.load(digits_ckpt, map_location="cpu", weights_only=False)
    ckpt["imgexp"]["class_names"] = names
    torch.save(ckpt, path)
    return path


def crafted_onnx(path: Path, class_names: str, n_classes: int = 2, size: int = 16) -> Path:
    """A valid classifier graph (every class scores the same: the first one wins) whose
    metadata holds `class_names` as given, as anyone can write with the onnx package."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["f"], ["m"], axes=[2, 3], keepdims=0),
             helper.make_node("MatMul", ["m", "w"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["proba"], axis=-1)]
    graph = helper.make_graph(
        nodes, "crafted",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["N", 3, size, size])],
        [helper.make_tensor_value_info("proba", TensorProto.FLOAT, ["N", n_classes]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_classes])],
        [numpy_helper.from_array(np.zeros((3, n_classes), np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    helper.set_model_props(model, {"class_names": class_names, "image_size": str(size),
                                   "imgexp_config": json.dumps({"data": {"image_size": size}})})
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_checkpoint_class_names_are_refused_by_predict(kind, tmp_path, digits_ckpt,
                                                       digits_root):
    from imgexp.predict.pipeline import predict_folder

    name = bad_name(kind, tmp_path)
    ckpt = crafted_checkpoint(digits_ckpt, [name] * 10, tmp_path / "crafted.ckpt")
    inputs, output = predict_inputs(tmp_path, digits_root), tmp_path / "deep" / "er" / "out"
    before = snapshot(tmp_path, tmp_path / "run")
    with pytest.raises(Exception) as error:
        predict_folder(predict_config(tmp_path, ckpt, inputs, output))
    assert_one_line(error, f"checkpoint {ckpt}", repr(name))
    assert snapshot(tmp_path, tmp_path / "run", output) == before


def test_checkpoint_class_names_are_refused_by_export(tmp_path, digits_ckpt):
    from imgexp.export.pipeline import export_checkpoint

    ckpt = crafted_checkpoint(digits_ckpt, ["../../escaped"] * 10, tmp_path / "crafted.ckpt")
    before = snapshot(tmp_path)
    cfg = compose_config("export", [f"ckpt_path={ckpt}"], tmp_path / "run")
    with pytest.raises(Exception) as error:
        export_checkpoint(cfg)
    assert_one_line(error, "'../../escaped'")
    assert snapshot(tmp_path, tmp_path / "run") == before


@pytest.mark.parametrize("kind", [*MODEL_KINDS, "newline", "not_a_list", "too_long",
                                  "c1_control", "duplicate"])
def test_onnx_metadata_class_names_are_refused_by_predict(kind, tmp_path, digits_root):
    from imgexp.predict.pipeline import predict_folder

    names = json.dumps("../x" if kind == "not_a_list" else ["0", "0"] if kind == "duplicate"
                       else [bad_name(kind, tmp_path), "ok"])
    model = crafted_onnx(tmp_path / "crafted.onnx", names)
    inputs, output = predict_inputs(tmp_path, digits_root), tmp_path / "deep" / "er" / "out"
    before = snapshot(tmp_path, tmp_path / "run")
    with pytest.raises(Exception) as error:
        predict_folder(predict_config(tmp_path, model, inputs, output))
    assert_one_line(error, f"ONNX metadata of {model}")
    assert snapshot(tmp_path, tmp_path / "run", output) == before


@pytest.mark.parametrize("name", ["predictions.csv", "rejected.csv", "summary.json", "_unknown"])
def test_predict_refuses_a_class_named_like_its_own_output(name, tmp_path, digits_root):
    from imgexp.predict.pipeline import predict_folder

    model = crafted_onnx(tmp_path / "crafted.onnx", json.dumps(["ok", name]))
    inputs, output = predict_inputs(tmp_path, digits_root), tmp_path / "deep" / "er" / "out"
    before = snapshot(tmp_path, tmp_path / "run")
    with pytest.raises(Exception) as error:
        predict_folder(predict_config(tmp_path, model, inputs, output))
    assert_one_line(error, repr(name), "rename that class")
    assert snapshot(tmp_path, tmp_path / "run") == before  # not even the output folder


def test_predict_cli_refuses_an_onnx_name_leading_out_in_one_line(tmp_path, digits_root):
    model = crafted_onnx(tmp_path / "crafted.onnx", json.dumps(["../../escaped", "ok"]))
    inputs, output = predict_inputs(tmp_path, digits_root), tmp_path / "deep" / "er" / "out"
    before = snapshot(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "imgexp.predict", f"ckpt_path={model}", f"input={inputs}",
         f"output={output}", "predict.unknown_threshold=null", "predict.num_workers=0",
         f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "'../../escaped'" in lines[0]
    assert snapshot(tmp_path, tmp_path / "run", output) == before


def test_export_refuses_to_write_bad_names_into_an_onnx_file():
    from imgexp.models.onnx_model import onnx_metadata

    model = SimpleNamespace(class_names=["ok", "../../escaped"],
                            config={"data": {"image_size": 16}})
    with pytest.raises(Exception) as error:
        onnx_metadata(model)
    assert_one_line(error, "'../../escaped'")


# -- relative paths joined onto a folder a stage writes to ------------------------------------
@pytest.mark.parametrize("case", ["parent", "absolute", "symlinked_folder"])
def test_select_export_keeps_manifest_paths_inside_export_dir(case, tmp_path):
    from imgexp.select.export import export_selection

    root = class_folders(tmp_path / "a" / "b" / "c" / "root", {"cls": 2})
    victim = class_folders(tmp_path / "a", {"x": 1}) / "x" / "0.png"  # a real file outside
    export_dir = tmp_path / "exports" / "one" / "two"
    export_dir.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    rel = {"parent": "../../../x/0.png", "absolute": str(victim),
           "symlinked_folder": "cls/0.png"}[case]
    if case == "symlinked_folder":  # the export folder's class folder already points elsewhere
        (export_dir / "cls").symlink_to(outside)
    before = snapshot(tmp_path, export_dir)
    with pytest.raises(Exception) as error:
        export_selection(root, ["cls/1.png", rel], "copy", str(export_dir), show_progress=False)
    assert_one_line(error, "manifest path", "leads outside")
    assert snapshot(tmp_path, export_dir) == before


def test_predict_refuses_class_folders_that_are_symlinks_out_of_output(tmp_path, digits_ckpt,
                                                                      digits_root):
    from imgexp.predict.pipeline import predict_folder

    inputs, output, outside = predict_inputs(tmp_path, digits_root), tmp_path / "out", \
        tmp_path / "outside"
    outside.mkdir()
    output.mkdir()
    for c in range(10):
        (output / str(c)).symlink_to(outside)
    before = snapshot(tmp_path, tmp_path / "run", output)
    with pytest.raises(Exception) as error:
        predict_folder(predict_config(tmp_path, digits_ckpt, inputs, output))
    assert_one_line(error, "class name", "leads outside")
    assert snapshot(tmp_path, tmp_path / "run", output) == before
    assert not any(outside.iterdir())


def test_quarantine_restore_refuses_a_log_path_leading_out(tmp_path):
    from imgexp.prepare.quarantine import LOG_NAME, restore

    root = tmp_path / "data" / "deep" / "root"
    root.mkdir(parents=True)
    run_dir = tmp_path / "run"
    (run_dir / "quarantine").mkdir(parents=True)
    (tmp_path / "victim.txt").write_text("not yours")
    log = run_dir / LOG_NAME
    log.write_text(json.dumps({"root": str(root), "quarantine": str(run_dir / "quarantine"),
                               "files": [{"path": "../../victim.txt", "reason": "x"}],
                               "restored": None}))
    before = snapshot(tmp_path)
    with pytest.raises(Exception) as error:
        restore(log)
    assert_one_line(error, "leads outside")
    assert snapshot(tmp_path) == before


# -- an unfinished predict output ---------------------------------------------------------------
KILL_AFTER_TWO = """
import os, runpy, signal, sys
import imgexp.predict.sorting as sorting
real, placed = sorting.place_file, []
def place_then_die(*args, **kwargs):
    real(*args, **kwargs)
    placed.append(args)
    if len(placed) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
sorting.place_file = place_then_die
sys.argv = ["imgexp-predict", *sys.argv[1:]]
runpy.run_module("imgexp.predict", run_name="__main__")
"""


def test_killed_predict_output_is_refused_with_the_command_that_cleans_it(
        tmp_path, digits_ckpt, digits_root):
    from imgexp.predict.pipeline import predict_folder

    inputs, output = predict_inputs(tmp_path, digits_root, n=5), tmp_path / "out"
    args = [f"ckpt_path={digits_ckpt}", f"input={inputs}", f"output={output}", "device=cpu",
            "predict.num_workers=0", "predict.unknown_threshold=null",
            f"hydra.run.dir={tmp_path / 'run'}"]
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_TWO, *args], capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert len(list(output.rglob("*.png"))) == 2 and not (output / "predictions.csv").exists()
    with pytest.raises(Exception) as error:
        predict_folder(predict_config(tmp_path, digits_ckpt, inputs, output))
    assert_one_line(error, "did not finish", "rm -r -- ")
    assert not [p for p in output.rglob("*_1.png")]
    command = str(error.value).split("`")[1]
    subprocess.run(command, shell=True, check=True)
    assert not list(output.rglob("*.png"))
    predict_folder(predict_config(tmp_path, digits_ckpt, inputs, output))
    placed = sorted(p.name for p in output.rglob("*.png"))
    assert placed == sorted(p.name for p in inputs.iterdir())  # each once, no _1 copy


# -- decompression bombs: one limit, every stage --------------------------------------------------
def png_bomb(path: Path, side: int) -> Path:
    """A grey PNG of side x side pixels written row by row: a few KB on disk whatever the side
    (13000: 20 KB for 169 MP, 830 MB once decoded)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    packer, row = zlib.compressobj(9), b"\x00" * (side + 1)  # filter byte + grey pixels
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture
def small_bomb(tmp_path, monkeypatch) -> Path:
    """200x200 pixels over a limit of 10000: the same refusal as a real bomb, in milliseconds."""
    monkeypatch.setenv("IMGEXP_MAX_IMAGE_PIXELS", BAD_LIMIT)
    return png_bomb(tmp_path / "bomb.png", 200)


def assert_bomb_reason(text: str) -> None:
    assert "decompression bomb: 200x200" in text and f"IMGEXP_MAX_IMAGE_PIXELS={BAD_LIMIT}" in text


def test_decompression_bomb_is_skipped_by_train_and_eval_datasets(small_bomb):
    from imgexp.data.dataset import ImageDataset

    item = ImageDataset(small_bomb.parent, [(small_bomb.name, 0)], 16)[0]
    assert_bomb_reason(item["skipped"])


def test_decompression_bomb_is_skipped_by_select_and_predict_files(small_bomb):
    from imgexp.data.dataset import ImageFiles

    assert_bomb_reason(ImageFiles([small_bomb], 16)[0]["skipped"])


def test_decompression_bomb_is_skipped_by_explain(small_bomb):
    from imgexp.explain.inputs import decode_images

    images, kept = decode_images([small_bomb], 16)
    assert kept == [] and len(images) == 0


def test_decompression_bomb_is_listed_by_audit(small_bomb):
    from imgexp.audit.pixels import describe, why_unreadable

    assert describe(small_bomb) is None
    assert_bomb_reason(why_unreadable(small_bomb))


def test_decompression_bomb_is_rejected_by_prepare(small_bomb):
    from imgexp.prepare.checks import CheckOptions, inspect_file

    check = inspect_file(str(small_bomb.parent), small_bomb.name, CheckOptions())
    assert not check.ok
    assert_bomb_reason(check.reason)


def test_decompression_bomb_upload_is_refused_by_the_app(small_bomb):
    from imgexp.app.uploads import BadUpload, decode_upload

    with pytest.raises(BadUpload) as error:
        decode_upload("bomb.png", small_bomb.read_bytes(), 16, max_upload_mb=1)
    assert_bomb_reason(str(error.value))


def test_13000_pixel_png_bomb_is_listed_unreadable_by_predict(tmp_path, digits_ckpt,
                                                                digits_root, monkeypatch):
    from imgexp.predict.pipeline import predict_folder

    monkeypatch.delenv("IMGEXP_MAX_IMAGE_PIXELS", raising=False)  # the default limit
    inputs, output = predict_inputs(tmp_path, digits_root, n=2), tmp_path / "out"
    bomb = png_bomb(inputs / "bomb.png", 13000)
    assert bomb.stat().st_size < 400_000
    before = snapshot(tmp_path, tmp_path / "run", output)
    summary = predict_folder(predict_config(tmp_path, digits_ckpt, inputs, output,
                                            "predict.mode=none"))
    assert (summary["n_predicted"], summary["n_rejected"]) == (2, 1)
    rejected = pd.read_csv(output / "rejected.csv")
    assert rejected["path"].tolist() == [str(bomb)]
    assert rejected["reason"][0] == ("decompression bomb: 13000x13000 = 169.0 MP > "
                                     "IMGEXP_MAX_IMAGE_PIXELS=100000000 (raise it to decode "
                                     "this image)")
    assert snapshot(tmp_path, tmp_path / "run", output) == before


def test_a_bad_pixel_limit_is_one_line(monkeypatch):
    from imgexp.data.image_io import max_image_pixels

    monkeypatch.setenv("IMGEXP_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(Exception) as error:
        max_image_pixels()
    assert_one_line(error, "IMGEXP_MAX_IMAGE_PIXELS='lots'")


# -- file names that are not UTF-8: left out by every stage, by name, as prepare lists them ------
def non_utf8_copy(folder: Path, source: Path) -> Path:
    bad = Path(os.fsdecode(os.fsencode(folder) + b"/bad\xff\xfename.png"))
    bad.write_bytes(source.read_bytes())
    return bad


def assert_left_out(caplog, bad: Path) -> None:
    assert repr(os.fsencode(bad)) in caplog.text and "not UTF-8" in caplog.text


def test_non_utf8_file_name_is_left_out_by_train_and_select(tmp_path, caplog):
    from imgexp.select.pipeline import list_images

    root = class_folders(tmp_path / "data", {"a": 4, "b": 4})
    bad = non_utf8_copy(root / "a", root / "a" / "0.png")
    flat = class_folders(tmp_path / "flat_parent", {"flat": 2}) / "flat"
    bad_flat = non_utf8_copy(flat, flat / "0.png")
    with caplog.at_level("WARNING"):
        datamodule = ImageDataModule(root=str(root), image_size=16)
        datamodule.resolve()
        datamodule.split_table().to_csv(index=False).encode()  # what train writes
        _, samples = list_images(compose_config("select", ["data=folder", f"data.root={flat}"],
                                                tmp_path / "run").data)
    assert len(datamodule.samples) == 8 and len(samples) == 2
    assert_left_out(caplog, bad)
    assert_left_out(caplog, bad_flat)


def test_non_utf8_file_name_is_left_out_by_predict(tmp_path, digits_ckpt, digits_root, caplog):
    from imgexp.predict.pipeline import predict_folder

    inputs, output = predict_inputs(tmp_path, digits_root, n=2), tmp_path / "out"
    bad = non_utf8_copy(inputs, next(inputs.iterdir()))
    with caplog.at_level("WARNING"):
        summary = predict_folder(predict_config(tmp_path, digits_ckpt, inputs, output))
    assert (summary["n_inputs"], summary["n_predicted"]) == (2, 2)
    assert_left_out(caplog, bad)
    assert bad.exists() and not [p for p in output.rglob("bad*")]
