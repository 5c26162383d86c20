"""Faults, not bad input: a kill at every point of a checkpoint save, a full disk, two processes
in one folder, a stale lock, a read-only folder. Each asserts a one-line error, nothing written
outside the stage's folder, and the last good result still readable.

The faults are injected into real stage subprocesses (tests/helpers/faults.py), counted in
bytes and calls, never timed.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parents[1]
SRC = TESTS.parent / "src"
# two epochs of two batches; only last.ckpt is saved (each epoch), so epoch 1's save
# overwrites a good one
TRAIN = ["logger=csv", "~callbacks.progress_bar", "trainer.enable_progress_bar=false",
         "data.image_size=16", "data.num_workers=0", "model.backbone.channels=[16,32]",
         "trainer.max_epochs=2", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1",
         "test=false", "~callbacks.model_checkpoint"]
HOLD = ("import sys; from imgexp import folder_lock as f; f._open_scope(); "
        "f.hold_folder(sys.argv[1], 'x'); print('held', flush=True); sys.stdin.read()")


def _env(**extra) -> dict:
    path = os.pathsep.join([str(SRC), str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, "PYTHONPATH": path, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1",
            **extra}


def _stage(stage: str, args: list[str], **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"imgexp.{stage}", *args], env=_env(**env),
                          capture_output=True, text=True, timeout=900)


def _one_line_error(out: subprocess.CompletedProcess, *words: str) -> str:
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and all(w in line for w in words), out.stderr[-2000:]
    return line


@pytest.fixture
def scratch(tmp_path) -> Path:
    """/tmp's stand-in for the stage (TMPDIR): on another file system than the run when the
    machine has one (/dev/shm), where a move into place is a copy."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev:
        folder = shm / f"imgexp-faults-{os.getpid()}-{tmp_path.name}"
        folder.mkdir()
        yield folder
        for p in sorted(folder.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        folder.rmdir()
    else:
        (tmp_path / "scratch").mkdir()
        yield tmp_path / "scratch"


def _faulty_training(tmp_path: Path, scratch: Path, data_dir: Path, fault: str):
    run = tmp_path / "runs" / "run"
    out = _stage("train", [*TRAIN, f"paths.data_dir={data_dir}", f"hydra.run.dir={run}",
                           "+callbacks.fault._target_=helpers.faults.Fault"],
                 FAULT=fault, FAULT_ROOTS=os.pathsep.join([str(tmp_path), str(scratch)]),
                 TMPDIR=str(scratch))
    return run, out


def _files(folder: Path) -> list[Path]:
    """(torch makes an empty folder of its own in TMPDIR as it starts: not a leftover)"""
    return [p for p in folder.rglob("*") if not p.is_dir()]


def _last_good(run: Path) -> dict:
    assert sorted(p.name for p in (run.parent).iterdir()) == ["run"]  # nothing beside the run
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


@pytest.mark.parametrize("fault", ["kill:bytes:0", "kill:bytes:0.5", "kill:fsync:1",
                                   "kill:replace", "kill:fsync:2", "kill:bytes:1.5"])
def test_sigkill_at_each_point_of_a_checkpoint_save_keeps_a_whole_last_ckpt(
        tmp_path, scratch, data_dir, fault):
    # bytes:0 / 0.5: before and in the middle of the write; fsync:1: written, not yet synced;
    # replace: synced, not renamed; fsync:2: renamed, folder not synced; bytes:1.5: past the
    # file (Lightning's fsspec save: in the middle of copying /tmp's file over last.ckpt)
    run, out = _faulty_training(tmp_path, scratch, data_dir, fault)
    assert out.returncode in (-signal.SIGKILL, 0), out.stderr[-3000:]
    ckpt = _last_good(run)
    assert ckpt["epoch"] == (1 if fault in ("kill:fsync:2", "kill:bytes:1.5") else 0)
    assert _files(scratch) == []  # no orphan in /tmp
    leftovers = [p.name for p in (run / "checkpoints").iterdir() if p.name != "last.ckpt"]
    assert all(name.startswith(".last.ckpt.") for name in leftovers)  # beside it, hidden


@pytest.mark.parametrize("fault", ["enospc:write", "enospc:fsync"])
def test_a_full_disk_stops_training_in_one_line_and_keeps_the_last_good_checkpoint(
        tmp_path, scratch, data_dir, fault):
    run, out = _faulty_training(tmp_path, scratch, data_dir, fault)
    _one_line_error(out, "is full", str(run))
    assert _last_good(run)["epoch"] == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]
    assert _files(scratch) == []


def test_a_leftover_of_a_killed_save_goes_at_the_next_save(tmp_path):
    from imgexp.training.checkpoint_io import AtomicCheckpointIO

    leftover = tmp_path / ".last.ckpt.k1ll3d.ckpt"
    leftover.write_bytes(b"half a checkpoint")
    AtomicCheckpointIO().save_checkpoint({"epoch": 3}, tmp_path / "last.ckpt")
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    assert torch.load(tmp_path / "last.ckpt", weights_only=True) == {"epoch": 3}


@pytest.fixture
def holder(request):
    """Another process holding the lock of a folder, until the test ends."""
    procs = []

    def hold(folder: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], env=_env(),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline() == "held\n"
        return proc

    yield hold
    for proc in procs:
        proc.stdin.close()
        proc.wait(timeout=60)


def test_a_second_training_into_a_run_folder_in_use_is_refused_naming_the_first(
        tmp_path, holder, data_dir):
    run = tmp_path / "run"
    first = holder(run)
    out = _stage("train", [*TRAIN, "trainer=debug", f"paths.data_dir={data_dir}",
                           f"hydra.run.dir={run}"])
    _one_line_error(out, f"PID {first.pid}", "hydra.run.dir=")
    assert [p.name for p in run.iterdir()] == [".imgexp.lock"]  # no .hydra/, no log of ours


def test_a_resume_into_a_run_still_in_use_is_refused(tmp_path, holder, digits_run, data_dir):
    # a resume continues in the checkpoint's run folder (not Hydra's new one): that is the one
    # to lock
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(
        (digits_run / "checkpoints" / "last.ckpt").read_bytes())
    first = holder(run)
    # a resume takes its run's recipe: only what it allows on top (no TRAIN overrides)
    out = _stage("train", ["logger=csv", "trainer.max_epochs=99", f"paths.data_dir={data_dir}",
                           f"hydra.run.dir={tmp_path / 'b'}",
                           f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"])
    _one_line_error(out, f"PID {first.pid}", "ckpt_path=")
    assert sorted(p.name for p in run.rglob("*")) == [".imgexp.lock", "checkpoints", "last.ckpt"]


def test_a_second_predict_into_an_output_in_use_is_refused_naming_the_first(
        tmp_path, holder, digits_ckpt, digits_root):
    output = tmp_path / "sorted"
    first = holder(output)
    out = _stage("predict", [f"ckpt_path={digits_ckpt}", f"input={digits_root / '3'}",
                             f"output={output}", f"hydra.run.dir={tmp_path / 'run'}"])
    _one_line_error(out, f"PID {first.pid}", "output=")
    assert [p.name for p in output.iterdir()] == [".imgexp.lock"]


def test_the_lock_of_a_killed_stage_is_taken_over(tmp_path, caplog):
    from imgexp import folder_lock

    run = tmp_path / "run"
    killed = subprocess.run([sys.executable, "-c", HOLD.replace(
        "sys.stdin.read()", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"), str(run)],
        env=_env(), capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL
    assert (run / ".imgexp.lock").is_file()  # left by the killed process
    folder_lock._open_scope()
    try:
        with caplog.at_level("INFO", logger="imgexp.folder_lock"):
            folder_lock.hold_folder(run, "hydra.run.dir")
        assert f"PID {os.getpid()} " in (run / ".imgexp.lock").read_text()
        assert "no longer running" in caplog.text
    finally:
        folder_lock._close_scope()
    assert list(run.iterdir()) == []  # released: the lock file goes with it


@pytest.fixture
def read_only_folder(tmp_path) -> Path:
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode:
        pytest.skip("mounting a read-only tmpfs needs root")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_run_folder_is_one_line(read_only_folder, data_dir):
    out = _stage("train", [*TRAIN, "trainer=debug", f"paths.data_dir={data_dir}",
                           f"hydra.run.dir={read_only_folder / 'run'}"])
    _one_line_error(out, "cannot write in", str(read_only_folder / "run"))
    assert list(read_only_folder.iterdir()) == []


@pytest.mark.parametrize("under", [False, True])
def test_predict_output_that_is_a_file_is_one_line(tmp_path, digits_ckpt, digits_root, under):
    from helpers.config import compose_config
    from imgexp.errors import ImgexpError
    from imgexp.predict.pipeline import predict_folder

    a_file = tmp_path / "taken"
    a_file.write_text("mine")
    output = a_file / "out" if under else a_file
    cfg = compose_config("predict", [f"ckpt_path={digits_ckpt}", f"input={digits_root / '3'}",
                                     f"output={output}", "device=cpu"], tmp_path / "run")
    with pytest.raises(ImgexpError, match="a file, not a folder") as error:
        predict_folder(cfg)
    assert f"output={output}" in str(error.value) and "\n" not in str(error.value)
    assert a_file.read_text() == "mine"


def test_a_run_folder_that_is_a_file_is_one_line(tmp_path, data_dir):
    run = tmp_path / "run"
    run.write_text("mine")
    out = _stage("train", [*TRAIN, "trainer=debug", f"paths.data_dir={data_dir}",
                           f"hydra.run.dir={run}"])
    _one_line_error(out, f"hydra.run.dir={run} is a file, not a folder")
    assert "Warning" not in out.stderr and run.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_the_lock_of_a_killed_stage_is_free_while_its_forked_workers_live(tmp_path):
    from imgexp import folder_lock

    run = tmp_path / "run"
    # a stage holding its lock forks a worker (as a DataLoader does), then is killed
    script = HOLD.replace("sys.stdin.read()", (
        "import os, signal, time\n"
        "child = os.fork()\n"
        "if child == 0:\n    os.closerange(0, 3); time.sleep(600); os._exit(0)\n"
        "print(child, flush=True); os.kill(os.getpid(), signal.SIGKILL)"))
    killed = subprocess.run([sys.executable, "-c", script, str(run)], env=_env(),
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    worker = int(killed.stdout.split()[-1])
    try:
        os.kill(worker, 0)  # the worker still runs
        folder_lock._open_scope()
        try:
            folder_lock.hold_folder(run, "hydra.run.dir")  # not refused naming the dead PID
        finally:
            folder_lock._close_scope()
    finally:
        os.kill(worker, signal.SIGKILL)


def test_a_fresh_training_into_a_finished_run_is_refused(tmp_path, data_dir):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.ckpt").write_bytes(b"run 1's")
    before = sorted(p.relative_to(run).as_posix() for p in run.rglob("*"))
    out = _stage("train", [*TRAIN, "trainer=debug", f"paths.data_dir={data_dir}",
                           f"hydra.run.dir={run}"])
    _one_line_error(out, f"{run} holds a finished run",
                    f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}")
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*")) == before  # no .hydra/
    assert (run / "checkpoints" / "best.ckpt").read_bytes() == b"run 1's"
