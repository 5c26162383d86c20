"""Bad input from the command line, a checkpoint or a data root: one line naming what to fix,
never a traceback, and never a silent reinterpretation (issue 27, item 9)."""

import logging
import os
import subprocess
import sys

import pytest
import torch

from helpers.images import class_folders
from imgexp.data.datamodule import ImageDataModule
from imgexp.errors import ImgexpError
from imgexp.models.factory import read_checkpoint
from imgexp.prepare.scan import scan_root


def run_stage(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"imgexp.{module}", *args], capture_output=True,
                          text=True, timeout=300, env=os.environ)


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """stderr without Hydra's closing hint (a composition error's second line)."""
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return [line for line in proc.stderr.strip().splitlines()
            if line and not line.startswith("Set the environment variable HYDRA_FULL_ERROR")]


@pytest.mark.parametrize(("module", "override", "args"), [
    ("train", "trainer.max_epochs=abc", ["trainer=debug"]),  # was Lightning's TypeError
    ("train", "optimizer.lr=fast", ["trainer=debug"]),  # was torch's TypeError
    ("predict", "predict.unknown_threshold=abc", ["ckpt_path=unused.ckpt", "input=unused"]),
])
def test_a_word_for_a_number_is_one_line_naming_the_key(module, override, args, tmp_path):
    proc = run_stage(module, override, *args, f"hydra.run.dir={tmp_path}")
    lines = error_lines(proc)
    assert len(lines) == 1 and lines[0].startswith(f"{override} is not a number: give one"), lines


def test_a_word_lightning_takes_for_a_number_still_composes(tmp_path):
    proc = run_stage("train", "trainer.devices=auto", "trainer.max_epochs=null", "--cfg", "job")
    assert proc.returncode == 0 and "devices: auto" in proc.stdout, proc.stderr


BAD_CONTENTS = {
    "not-a-mapping": {"imgexp": "v1"},
    "no-classes": {"imgexp": {"class_names": [], "config": {"model": {}}}, "state_dict": {}},
    "no-config": {"imgexp": {"class_names": ["a", "b"], "config": None}, "state_dict": {}},
    "no-weights": {"imgexp": {"class_names": ["a", "b"], "config": {"model": {}}}},
}


@pytest.mark.parametrize("content", BAD_CONTENTS.values(), ids=BAD_CONTENTS.keys())
def test_a_dict_checkpoint_with_wrong_imgexp_contents_is_refused(content, tmp_path):
    ckpt = tmp_path / "model.ckpt"
    torch.save(content, ckpt)
    with pytest.raises(ImgexpError, match=r"is not a usable imgexp checkpoint \("):
        read_checkpoint(ckpt)


def test_a_dict_checkpoint_with_wrong_imgexp_contents_is_one_line(tmp_path):
    ckpt = tmp_path / "model.ckpt"
    torch.save(BAD_CONTENTS["no-config"], ckpt)  # was a KeyError/TypeError traceback
    lines = error_lines(run_stage("eval", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'r'}"))
    assert lines == [f"error: {ckpt} is not a usable imgexp checkpoint (no model config in "
                     "imgexp.config): point at a file a training run wrote "
                     "(RUN/checkpoints/best.ckpt)"]


@pytest.mark.parametrize("ratios", [(0.2, 0.3, 0.2), (1, 1, 1), (0.7, 0.2, 0.2)])
def test_data_ratios_that_do_not_add_up_to_one_are_refused(ratios):
    # (0.2, 0.3, 0.2) used to be rescaled: train got 28% of the images, not 20%
    with pytest.raises(ImgexpError, match=r"data.ratios=.* adds up to .*, not 1"):
        ImageDataModule(root="unused", ratios=ratios)
    ImageDataModule(root="unused", ratios=(0.7, 0.15, 0.15))  # 1 give or take rounding


def test_prepare_ratios_that_do_not_add_up_to_one_are_one_line(tmp_path):
    root = class_folders(tmp_path / "photos", {"a": 3, "b": 3})
    lines = error_lines(run_stage("prepare", f"data.root={root}", "prepare.ratios=[0.5,0.3,0.3]",
                                  f"hydra.run.dir={tmp_path / 'run'}"))
    assert lines == ["error: prepare.ratios=[0.5, 0.3, 0.3] adds up to 1.1, not 1: give the "
                     "shares of train, val and test (e.g. [0.7, 0.15, 0.15])"]


def test_predict_batch_size_zero_is_refused_not_the_default(tmp_path):
    lines = error_lines(run_stage("predict", "ckpt_path=unused.ckpt", f"input={tmp_path}",
                                  "predict.batch_size=0", f"hydra.run.dir={tmp_path / 'run'}"))
    assert len(lines) == 1 and lines[0].startswith("error: predict.batch_size=0 is not a whole "
                                                   "number >= 1"), lines


def test_a_folder_symlink_is_skipped_by_every_stage_with_a_warning(tmp_path, caplog):
    """prepare skipped it; train and audit (the data module) read it as a class, and a link
    inside a class as more of its images."""
    root = class_folders(tmp_path / "photos", {"a": 4, "b": 4})
    (root / "c").symlink_to(root / "a", target_is_directory=True)  # a class of a's images
    (root / "b" / "more").symlink_to(root / "a", target_is_directory=True)
    with caplog.at_level(logging.WARNING, logger="imgexp.data.splits"):
        dm = ImageDataModule(root=str(root), ratios=(1, 0, 0))
        dm.resolve()
    assert dm.classes == ["a", "b"]
    assert sorted(s.path for s in dm.samples if s.label == "b") == [f"b/{i}.png" for i in range(4)]
    warned = [r.getMessage() for r in caplog.records if "folder symlink" in r.getMessage()]
    assert [w.split(" ", 1)[0] for w in warned] == [str(root / "c"), str(root / "b" / "more")]
    scan = scan_root(root)  # imgexp-prepare: the same rule
    assert sorted(scan.class_names) == ["a", "b"]
    assert {path for path, _ in scan.ignored} == {"c", "b/more"}
