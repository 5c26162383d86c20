"""What a user sees from the entry points: one-line errors, a fast --help, progress that suits
where the output goes, and no library noise."""

import io
import logging
import os
import subprocess
import sys

import pytest

from helpers.config import compose_config
from imgexp.progress import progress

STAGES = ["train", "select", "prepare", "eval", "predict", "explain", "compare", "app", "export",
          "audit"]
HEAVY = ("torch", "lightning", "timm", "pandas", "matplotlib", "sklearn")


def run_stage(module: str, *args: str, env: dict | None = None, timeout: int = 300):
    return subprocess.run([sys.executable, "-m", f"imgexp.{module}", *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize(("module", "args", "key"), [
    ("train", ["data=folder"], "data.root"),
    ("train", ["data=manifest"], "data.manifest"),
    ("train", ["experiment=tounum_cnn"], "data.root"),
    ("select", [], "data.root"),
    ("prepare", [], "data.root"),
    ("eval", [], "ckpt_path"),
    ("predict", [], "ckpt_path"),
    ("explain", [], "ckpt_path"),
    ("compare", [], "dirs"),
    ("audit", [], "data.root"),
    ("app", [], "ckpt_path"),
    ("export", [], "ckpt_path"),
])
def test_an_unset_mandatory_key_is_one_line_naming_it(module, args, key, tmp_path):
    """...before the stage imports its libraries (a folder's data.root, merged over a null
    default, once stayed null and was reported by the data module after seconds of imports)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", f"imgexp.{module}", *args,
                           f"hydra.run.dir={tmp_path}"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert not imported_modules(proc.stderr) & set(HEAVY)
    lines = [line for line in proc.stderr.strip().splitlines()
             if not line.startswith("import time:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and f"{key}=" in lines[0], lines
    assert "Traceback" not in proc.stdout + proc.stderr and "[ERROR]" not in proc.stdout


@pytest.mark.parametrize("content", [b"", b"not a checkpoint\n"], ids=["empty", "text"])
@pytest.mark.parametrize(("module", "args"), [
    ("train", ["trainer=debug"]),
    ("eval", []),
])
def test_a_file_that_is_not_a_checkpoint_is_one_line_naming_it(module, args, content, tmp_path):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(content)
    proc = run_stage(module, *args, f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {ckpt} is not a readable checkpoint")
    assert "Traceback" not in proc.stdout + proc.stderr


def imported_modules(stderr: str) -> set[str]:
    """Module names from `python -X importtime`'s report."""
    return {line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines()
            if line.startswith("import time:")}


@pytest.mark.parametrize(("module", "args"), [
    *[(m, ["--help"]) for m in STAGES],
    ("train", ["--cfg", "job"]),
    ("select", ["--cfg", "job", "data.root=/images"]),
    ("train", ["trainer.max_epoch=3"]),  # a mistyped override: Hydra's one-line answer
])
def test_help_cfg_and_a_bad_override_answer_without_importing_torch(module, args):
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", f"imgexp.{module}", *args],
                          capture_output=True, text=True, timeout=120)
    modules = imported_modules(proc.stderr)
    assert "hydra" in modules  # the report was read
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))
    if args == ["--help"]:
        assert proc.returncode == 0 and "Configuration groups" in proc.stdout
    elif args[0] == "--cfg":
        assert proc.returncode == 0 and "seed: 42" in proc.stdout
    else:
        assert proc.returncode == 1 and "max_epoch" in proc.stderr


def test_help_lists_every_group_from_one_copy_of_the_config_repository(monkeypatch, capsys):
    """`--help` used to build a copy of the whole config repository per config group (~140)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    import imgexp.train.run

    copies = []
    create = ConfigLoaderImpl._parse_overrides_and_create_caching_repo
    monkeypatch.setattr(ConfigLoaderImpl, "get_group_options", ConfigLoaderImpl.get_group_options)
    monkeypatch.setattr(ConfigLoaderImpl, "_parse_overrides_and_create_caching_repo",
                        lambda self, *a: copies.append(a) or create(self, *a))
    monkeypatch.setattr(sys, "argv", ["imgexp-train", "--help"])
    with pytest.raises(SystemExit) as done:
        imgexp.train.run.main()
    out = capsys.readouterr().out
    assert done.value.code in (0, None)
    assert "model/backbone: " in out and "scheduler: cosine, none, onecycle" in out
    assert len(copies) <= 3, len(copies)  # one for the listing, the rest for composing


NOISE = ["💡", "litlogger", "anonymous setting", "LeafSpec", "GPU available", "TPU available",
         "Run summary", "Run history", "wandb: ", "INFO: "]


def test_a_training_run_prints_what_the_user_needs_and_no_noise(tmp_path, data_dir):
    """W&B offline (logger=default), output to a pipe as in a SLURM log."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SILENT"}  # conftest's, not ours
    proc = subprocess.run(
        [sys.executable, "-m", "imgexp.train", f"paths.data_dir={data_dir}", "logger=default",
         "trainer.max_epochs=2", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1",
         "+trainer.limit_test_batches=1", "data.image_size=16", f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, timeout=600, env={**env, "WANDB_MODE": "offline"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert [n for n in NOISE if n in out] == []
    assert "\r" not in out and "\x1b[" not in out  # no redrawn bar in a log
    epochs = [line for line in out.splitlines() if "] - epoch " in line]
    assert len(epochs) == 2 and "epoch 2/2: " in epochs[1] and "val/acc " in epochs[1]
    assert out.count(f"run directory: {tmp_path}") == 1
    assert out.count(f"metrics:    {tmp_path / 'metrics.json'}") == 1
    assert out.count(f"checkpoint: {tmp_path / 'checkpoints' / 'best.ckpt'}") == 1
    assert out.count(f"wandb sync {tmp_path / 'wandb' / 'offline-run-'}") == 1
    assert "test/acc = " in proc.stdout


def test_a_user_error_is_printed_once(tmp_path):
    proc = run_stage("train", "data=folder", f"data.root={tmp_path / 'absent'}",
                     f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert out.count(str(tmp_path / "absent")) == 1 and "Traceback" not in out, out


def test_a_user_error_raised_inside_a_config_constructor_is_one_line(tmp_path, data_dir):
    # Hydra's instantiate wrapped it: 5 lines of "Error executing job ... full_key: data"
    proc = run_stage("train", f"paths.data_dir={data_dir}", "data.cache=bogus",
                     f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: data.cache='bogus' is not an option: use auto, ram or none"], proc.stderr


def test_a_cache_budget_that_is_not_a_size_is_one_line(tmp_path, data_dir):
    proc = run_stage("train", f"paths.data_dir={data_dir}", "data.cache_budget_mb=abc",
                     f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: data.cache_budget_mb='abc' is not a size: give the MB that data.cache=auto may "
        "fill (e.g. 1024; 0 never caches)"], proc.stderr


@pytest.mark.parametrize("budget", [None, -5, float("nan"), True, "512"])
def test_every_cache_budget_that_is_not_a_size_is_refused(budget):
    from imgexp.data.datamodule import ImageDataModule
    from imgexp.errors import ImgexpError

    with pytest.raises(ImgexpError, match="data.cache_budget_mb=.* is not a size"):
        ImageDataModule(root="unused", cache_budget_mb=budget)
    ImageDataModule(root="unused", cache_budget_mb=0)  # 0 is a size: auto never caches
    ImageDataModule(root="unused", cache_budget_mb=0.5)


@pytest.mark.parametrize(("override", "line"), [
    ("trainer.max_epoch=3", "trainer.max_epoch is not a key of this config (did you mean "
                            "trainer.max_epochs?); add a new one with +trainer.max_epoch=3"),
    ("trainr.max_epochs=3", "trainr is not a key of this config (did you mean trainer?); add a "
                            "new one with +trainr.max_epochs=3"),
    ("zzz.qqq=1", "zzz is not a key of this config (`--cfg job` lists them); add a new one "
                  "with +zzz.qqq=1"),
    ("trainer={max_epoch:3}", "trainer.max_epoch is not a key of this config (did you mean "
                              "trainer.max_epochs?); add a new one with +trainer.max_epoch=..."),
])
def test_a_mistyped_key_names_the_closest_keys_not_the_plus_advice(override, line, tmp_path):
    proc = run_stage("train", override, f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[0] == line, proc.stderr
    assert "Traceback" not in proc.stderr and "not in struct" not in proc.stderr


@pytest.mark.parametrize(("key", "value"), [("image_size", "abc"), ("image_size", 32.5),
                                            ("batch_size", 0), ("num_workers", -1)])
def test_a_data_size_that_is_not_a_whole_number_is_refused(key, value):
    import numpy as np

    from imgexp.data.datamodule import ImageDataModule
    from imgexp.errors import ImgexpError

    with pytest.raises(ImgexpError, match=f"data.{key}=.* is not a whole number"):
        ImageDataModule(root="unused", **{key: value})
    ImageDataModule(root="unused", image_size=np.int64(32))  # a size read back from numpy


def test_enable_progress_bar_false_alone_trains_with_no_progress(tmp_path, data_dir, caplog,
                                                                capsys):
    from imgexp.train.fit import fit_and_test

    cfg = compose_config("train", ["logger=csv", "trainer.enable_progress_bar=false",
                                   f"paths.data_dir={data_dir}", "trainer.max_epochs=1",
                                   "+trainer.limit_train_batches=1", "+trainer.limit_val_batches=1",
                                   "+trainer.limit_test_batches=1", "data.image_size=16"], tmp_path)
    with caplog.at_level(logging.INFO):
        metrics = fit_and_test(cfg)
    assert metrics["epochs"] == 1 and "test/acc" in metrics
    assert not [r for r in caplog.records if r.name == "imgexp.progress"]
    captured = capsys.readouterr()
    assert "Epoch 0" not in captured.out + captured.err  # neither Rich's nor tqdm's bar


def test_epoch_lines_show_that_epochs_metrics(tmp_path, data_dir, caplog):
    """Each line's train/acc is its own epoch's (it was the previous epoch's)."""
    import pandas as pd

    from imgexp.train.fit import fit_and_test

    cfg = compose_config("train", ["logger=csv", f"paths.data_dir={data_dir}",
                                   "trainer.max_epochs=3", "+trainer.limit_train_batches=4",
                                   "+trainer.limit_val_batches=2", "test=false",
                                   "data.image_size=16"], tmp_path)
    cfg.callbacks.progress_bar._target_ = "imgexp.training.progress.EpochLines"
    with caplog.at_level(logging.INFO, logger="imgexp.progress"):
        fit_and_test(cfg)
    lines = [r.getMessage() for r in caplog.records if r.name == "imgexp.progress"]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    logged = pd.read_csv(tmp_path / "csv" / "metrics.csv").dropna(subset=["train/acc"])
    for line, acc in zip(lines, logged["train/acc"], strict=True):
        assert f"train/acc {acc:.4g}," in line, (line, acc)


def test_progress_in_a_log_is_ten_lines_and_off_is_silent(caplog):
    log_file = io.StringIO()  # not a terminal
    with caplog.at_level(logging.INFO, logger="imgexp.progress"):
        for _ in progress(range(250), desc="features", unit="img", file=log_file):
            pass
        lines = [r.getMessage() for r in caplog.records]
        caplog.clear()
        for _ in progress(range(250), desc="features", unit="img", file=log_file,
                          enabled=False):
            pass
        assert caplog.records == []
    assert log_file.getvalue() == ""  # no bar drawn into the file
    assert len(lines) == 10 and lines[0].startswith("features:  10% (25/250 img)")
    assert lines[-1].startswith("features: 100% (250/250 img)")


@pytest.mark.parametrize("switch", [True, False])
def test_select_progress_switch(switch, digits_root, tmp_path, caplog):
    from imgexp.select.pipeline import run_select

    flat = tmp_path / "incoming"
    flat.mkdir()
    for i, path in enumerate(sorted(digits_root.rglob("*.png"))[::60]):
        (flat / f"img_{i:03d}.png").write_bytes(path.read_bytes())
    cfg = compose_config("select", [
        f"data.root={flat}", "model/backbone=simple_cnn", "data.image_size=16",
        "model.backbone.image_size=16",
        f"select.cache_dir={tmp_path}/c", "select.n_clusters=3", "select.pictures=false",
        "select.n_experiments=2", "select.device=cpu", f"select.progress={switch}"],
        tmp_path / "run")
    with caplog.at_level(logging.INFO, logger="imgexp.progress"):
        run_select(cfg)
    shown = {r.getMessage().split(":")[0] for r in caplog.records if r.name == "imgexp.progress"}
    assert shown == ({"features", "clustering"} if switch else set())


def _listed_groups(module: str) -> set[str]:
    out = subprocess.run([sys.executable, "-m", f"imgexp.{module}", "--help"], capture_output=True,
                         text=True, timeout=120).stdout
    groups = out.split("== Configuration groups ==", 1)[1].split("==", 1)[0]
    return {line.split(":", 1)[0].strip() for line in groups.splitlines() if ":" in line}


def test_a_stage_group_is_not_listed_by_the_other_stages():
    """select=default|large lives in the select package (its config adds it to the search path)."""
    groups = _listed_groups("train")
    assert "task" in groups  # the listing was read
    assert not any(group.startswith("select") for group in groups), sorted(groups)


def test_the_collector_comes_back_on_when_a_stage_import_fails():
    import gc

    from imgexp.cli import collector_paused

    with pytest.raises(ImportError), collector_paused():
        assert not gc.isenabled()
        import imgexp.no_such_module  # noqa: F401
    assert gc.isenabled() and gc.get_freeze_count() > 0
    gc.disable()  # a caller that had it off gets it back off
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize("module", [s for s in STAGES if s != "app"])  # app: streamlit's own
def test_every_stage_imports_its_libraries_with_the_collector_paused(module):
    from pathlib import Path

    import imgexp

    source = (Path(imgexp.__file__).parent / module / "run.py").read_text()
    assert "with collector_paused():\n        from imgexp." in source
