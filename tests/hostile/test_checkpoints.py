"""Hostile checkpoint files: a file is read as tensors and plain data only, whichever stage
opens it. A pickle whose payload would create a marker file is refused, in one line naming
what it needed, by every stage that takes a checkpoint; and the marker never appears."""

import builtins
import copy
import os
import pathlib
import pickle
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch
from omegaconf import OmegaConf

from helpers.config import compose_config, train_config
from imgexp.errors import ImgexpError
from imgexp.models.factory import load_model, read_checkpoint


class Payload:
    """Unpickled freely, calls `call(*args)`: what a shared .ckpt can hide."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


class Subclass(torch.Tensor):
    """A tensor subclass: its class is a global of the writer's code, rebuilt when opened."""


def _save(path: pathlib.Path, obj) -> pathlib.Path:
    torch.save(obj, path)
    return path


def _with_payload(ckpt: dict, payload) -> dict:
    """A working imgexp checkpoint that also carries a payload: a stage opening it freely
    would run the payload and then work as usual, so nobody would notice."""
    return {**ckpt, "imgexp": {**ckpt["imgexp"], "notes": payload}}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, digits_ckpt) -> dict:
    """name -> (file, marker the payload would create or None, what the refusal says)."""
    folder = tmp_path_factory.mktemp("hostile")
    good = torch.load(digits_ckpt, map_location="cpu", weights_only=True)
    marker = {name: folder / f"MARK_{name}" for name in ("system", "system4", "touch", "exec")}
    files = {}
    raw = folder / "system.ckpt"  # not even torch.save's format: a bare pickle (protocol 2)
    raw.write_bytes(pickle.dumps(Payload(os.system, f"touch {marker['system']}"), protocol=2))
    files["system"] = (raw, marker["system"], "needs posix.system")
    raw4 = folder / "system4.ckpt"  # protocol 4: torch's unpickler stops at its first opcode
    raw4.write_bytes(pickle.dumps(Payload(os.system, f"touch {marker['system4']}"), protocol=4))
    files["system4"] = (raw4, marker["system4"], "not a readable checkpoint (UnpicklingError)")
    files["touch"] = (_save(folder / "touch.ckpt", _with_payload(
        good, Payload(pathlib.Path.touch, marker["touch"]))), marker["touch"], "needs getattr")
    files["exec"] = (_save(folder / "exec.ckpt", _with_payload(
        good, Payload(builtins.exec, f"open({str(marker['exec'])!r}, 'w')"))), marker["exec"],
        "needs exec")
    files["subclass"] = (_save(folder / "subclass.ckpt", {**good, "state_dict": {
        k: v.as_subclass(Subclass) for k, v in good["state_dict"].items()}}), None,
        f"needs {__name__}.Subclass")
    import numpy as np
    files["numpy"] = (_save(folder / "numpy.ckpt", {**good, "extra": np.ones(3)}), None,
                      "needs numpy._core.multiarray._reconstruct")
    # a Lightning checkpoint of another project: save_hyperparameters pickled its DictConfig
    files["dictconfig"] = (_save(folder / "dictconfig.ckpt", {
        **good, "hyper_parameters": OmegaConf.create({"lr": 0.1})}), None,
        "needs omegaconf.dictconfig.DictConfig")
    files["not_a_dict"] = (_save(folder / "list.ckpt", list(good["state_dict"].values())), None,
                           "is not an imgexp checkpoint")
    with zipfile.ZipFile(folder / "layout.ckpt", "w") as z:
        z.writestr("archive/notes.txt", "a zip, but not torch.save's layout")
    files["zip_layout"] = (folder / "layout.ckpt", None, "not a readable checkpoint")
    data = digits_ckpt.read_bytes()
    (folder / "cut.ckpt").write_bytes(data[: len(data) // 2])
    files["truncated"] = (folder / "cut.ckpt", None, "not a readable checkpoint (RuntimeError)")
    (folder / "empty.ckpt").write_bytes(b"")
    files["empty"] = (folder / "empty.ckpt", None, "not a readable checkpoint (EOFError)")
    (folder / "text.ckpt").write_text("epoch: 3\nstate_dict: see the run\n")
    files["text"] = (folder / "text.ckpt", None, "not a readable checkpoint")
    (folder / "random.ckpt").write_bytes(bytes(range(256)) * 8)
    files["random"] = (folder / "random.ckpt", None, "not a readable checkpoint")
    # data only, yet its config names callables: torch.load of a pickle it carries (Hydra's
    # own blocklist stops os.system, not this chain), for what every stage builds and for the
    # callbacks a resume runs
    for name, key in (("config", "model"), ("callbacks", "callbacks")):
        marker[name] = folder / f"MARK_{name}"
        chain = {"_target_": "torch.load", "weights_only": False, "_args_": [
            {"_target_": "io.BytesIO", "_args_": [{"_target_": "builtins.bytes.fromhex", "_args_": [
                pickle.dumps(Payload(os.system, f"touch {marker[name]}"), protocol=2).hex()]}]}]}
        config = copy.deepcopy(good["imgexp"]["config"])
        if key == "model":
            config["model"]["backbone"] = chain
        else:
            config["callbacks"]["chain"] = chain
        files[name] = (_save(folder / f"{name}.ckpt", {**good, "imgexp": {
            **good["imgexp"], "config": config}}), marker[name], "names torch.load")
    (folder / "dir.ckpt").mkdir()
    files["directory"] = (folder / "dir.ckpt", None, "not found")
    return files


def _one_line(error: pytest.ExceptionInfo, path, says: str) -> None:
    message = str(error.value)
    assert "\n" not in message and str(path) in message and says in message, message


@pytest.mark.parametrize("name", ["system", "system4", "touch", "exec", "subclass", "numpy",
                                  "dictconfig", "not_a_dict", "zip_layout", "truncated", "empty",
                                  "text", "random", "directory", "config"])
def test_every_hostile_file_is_refused_in_one_line_and_runs_nothing(hostile, name):
    path, marker, says = hostile[name]
    with pytest.raises(ImgexpError) as error:
        read_checkpoint(path)  # what every stage opens a ckpt_path with
    _one_line(error, path, says)
    assert marker is None or not marker.exists()


def test_a_refused_type_comes_with_the_way_to_convert_a_trusted_file(hostile):
    path = hostile["dictconfig"][0]
    with pytest.raises(ImgexpError, match=rf"python -m imgexp.models.convert {path} NEW.ckpt"):
        read_checkpoint(path)


def test_a_state_dict_of_other_shapes_is_one_line(tmp_path, digits_ckpt):
    ckpt = torch.load(digits_ckpt, map_location="cpu", weights_only=True)
    ckpt["state_dict"]["backbone.neck.1.weight"] = torch.zeros(3, 3)
    torch.save(ckpt, tmp_path / "shapes.ckpt")
    with pytest.raises(ImgexpError) as error:
        load_model(tmp_path / "shapes.ckpt")
    _one_line(error, "", "size mismatch for backbone.neck.1.weight")


# -- every stage that takes a checkpoint --------------------------------------------------------

@pytest.fixture(scope="module")
def small_root(tmp_path_factory, digits_root):
    """Two classes of four digits: enough for select and audit to reach the checkpoint."""
    root = tmp_path_factory.mktemp("small")
    for label in ("0", "1"):
        (root / label).mkdir()
        for p in sorted((digits_root / label).glob("*.png"))[:4]:
            shutil.copy(p, root / label / p.name)
    return root


def _stages(data_dir, digits_root, small_root, out):
    """stage name -> a call opening `ckpt` the way that stage does."""
    from imgexp.app.inference import load_classifier, load_extractor
    from imgexp.app.settings import AppSettings
    from imgexp.audit.pipeline import run_audit
    from imgexp.eval.pipeline import evaluate_checkpoint
    from imgexp.explain.pipeline import run as explain
    from imgexp.export.pipeline import export_checkpoint
    from imgexp.predict.pipeline import predict_folder
    from imgexp.select.pipeline import run_select
    from imgexp.train.fit import fit_and_test

    def train(*overrides):
        return lambda ckpt: fit_and_test(train_config(
            ["data.image_size=16", *(o.format(ckpt=ckpt) for o in overrides)], out / "train",
            data_dir))

    def stage(name, fn, *overrides):
        return lambda ckpt: fn(compose_config(name, [o.format(ckpt=ckpt) for o in overrides],
                                              out / name))

    def app(load):
        return lambda ckpt: load(AppSettings(ckpt_path=str(ckpt), gallery=str(small_root),
                                             cache_dir=str(out / "app"), device="cpu"))

    return {
        "train resume": train("model.backbone.channels=[16,32]", "ckpt_path={ckpt}"),
        "train backbone": train("model.backbone.checkpoint_path={ckpt}"),
        "timm backbone": train("model/backbone=timm", "model.backbone.name=resnet18",
                               "model.backbone.checkpoint_path={ckpt}"),
        "eval": stage("eval", evaluate_checkpoint, "ckpt_path={ckpt}", "device=cpu"),
        "predict": stage("predict", predict_folder, "ckpt_path={ckpt}", f"input={digits_root}",
                         f"output={out / 'predict'}"),
        "export": stage("export", export_checkpoint, "ckpt_path={ckpt}",
                        f"output={out / 'export'}"),
        "explain": stage("explain", explain, "ckpt_path={ckpt}"),
        "select": stage("select", run_select, f"data.root={small_root}",
                        "select.ckpt_path={ckpt}", "select.cache_dir=null"),
        "audit": stage("audit", run_audit, f"data.root={small_root}", "audit.ckpt_path={ckpt}",
                       "audit.cache_dir=null"),
        "app classifier": app(load_classifier),
        "app embeddings": app(load_extractor),
    }


@pytest.mark.parametrize("payload", ["system", "touch", "config"])
def test_no_stage_runs_a_checkpoint_payload(hostile, payload, data_dir, digits_root, small_root,
                                            tmp_path):
    path, marker, says = hostile[payload]
    for name, opens in _stages(data_dir, digits_root, small_root, tmp_path).items():
        with pytest.raises(ImgexpError) as error:
            opens(path)
        # a backbone's checkpoint_path reads the weights only, never the config: its refusal
        # here is theirs not fitting this model
        _one_line(error, path, "checkpoint_path" if payload == "config" and "backbone" in name
                  else says)
        assert not marker.exists(), f"{name} ran the payload"


def test_the_command_line_prints_the_refusal_in_one_line(hostile, tmp_path):
    path, marker, _ = hostile["touch"]
    proc = subprocess.run([sys.executable, "-m", "imgexp.eval", f"ckpt_path={path}",
                           f"hydra.run.dir={tmp_path}"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1 and not marker.exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path} is refused: it needs "), lines


def test_a_resume_runs_no_callback_its_checkpoint_names(hostile, tmp_path):
    """The callbacks a resume inherits are called too: a chain there is refused before any."""
    path, marker, says = hostile["callbacks"]
    proc = subprocess.run([sys.executable, "-m", "imgexp.train", f"ckpt_path={path}",
                           f"hydra.run.dir={tmp_path / 'launch'}"], capture_output=True,
                          text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and not marker.exists(), proc.stderr[-2000:]
    assert len(lines) == 1 and says in lines[0] and "callbacks.chain" in lines[0], lines


# -- what imgexp writes is what it reads ---------------------------------------------------------

def test_every_kind_of_imgexp_checkpoint_loads_as_data_only(digits_run, cbir_ckpt, siamese_run):
    for path in (digits_run / "checkpoints" / "last.ckpt", cbir_ckpt,
                 siamese_run / "checkpoints" / "last.ckpt"):
        ckpt = torch.load(path, map_location="cpu", weights_only=True)  # no allow-list
        assert isinstance(ckpt["imgexp"]["config"], dict)


def test_a_resume_reads_the_checkpoint_as_data_only_lightning_included(tmp_path, digits_run,
                                                                      data_dir, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    loads = []
    original = torch.load

    def spy(*args, **kwargs):
        loads.append(kwargs.get("weights_only"))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    from imgexp.train.fit import fit_and_test

    metrics = fit_and_test(train_config(
        ["trainer.max_epochs=4", "data.image_size=16", "model.backbone.channels=[16,32]",
         f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"], run, data_dir))
    assert metrics["epochs"] == 4
    # ours, Lightning's resume and its test on best.ckpt
    assert len(loads) >= 3 and all(w is True for w in loads), loads


def test_convert_keeps_the_data_of_a_trusted_file_and_drops_the_rest(hostile, tmp_path):
    from imgexp.models.convert import main

    old = hostile["dictconfig"][0]
    assert main([str(old), str(tmp_path / "new.ckpt")]) == 0
    new = read_checkpoint(tmp_path / "new.ckpt")
    assert new["hyper_parameters"] == {"lr": 0.1}
    assert load_model(tmp_path / "new.ckpt").class_names == [str(d) for d in range(10)]
