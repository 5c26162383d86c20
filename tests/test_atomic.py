"""Atomic writes and file placement shared by every stage."""

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from imgexp.atomic import atomic_path, place_file, write_frame_atomic, write_json_atomic


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "report.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.suffix == ".csv" and tmp.parent == tmp_path
        tmp.write_text("half a fi")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old\n" and _leftovers(tmp_path) == []


def test_json_and_frame_writers_replace_the_file(tmp_path):
    write_json_atomic(tmp_path / "m.json", {"b": 1, "a": float("nan")})
    assert list(json.loads((tmp_path / "m.json").read_text())) == ["a", "b"]
    write_frame_atomic(pd.DataFrame({"x": [1, 2]}), tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text() == "x\n1\n2\n"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("mode", ["copy", "hardlink", "symlink"])
def test_place_file_modes_never_replace_an_existing_file(tmp_path, mode):
    src = tmp_path / "src.png"
    src.write_bytes(b"image bytes")
    out = tmp_path / "out"
    out.mkdir()
    place_file(src, out / "a.png", mode, "x.mode")
    assert (out / "a.png").read_bytes() == b"image bytes"
    assert (out / "a.png").is_symlink() == (mode == "symlink")
    assert os.path.samefile(src, out / "a.png") == (mode != "copy")
    (out / "b.png").write_bytes(b"someone else's")
    with pytest.raises(FileExistsError):
        place_file(src, out / "b.png", mode, "x.mode")
    assert (out / "b.png").read_bytes() == b"someone else's"
    assert _leftovers(out) == [] and src.read_bytes() == b"image bytes"


def test_results_get_the_users_usual_permissions_not_the_temporary_files_owner_only(
        tmp_path, monkeypatch):
    # mkstemp makes 0600 files: renamed into place as they were, colleagues could not read them
    import stat

    from imgexp import atomic

    mask = os.umask(0)
    os.umask(mask)
    assert atomic.FILE_MODE == 0o666 & ~mask
    monkeypatch.setattr(atomic, "FILE_MODE", 0o644)
    path = write_json_atomic(tmp_path / "metrics.json", {"acc": 1.0})
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_cache_chunks_and_reports_get_the_mode_a_plain_open_gives(tmp_path):
    # chunks were renamed from mkstemp's 0600 file: owner-only on a shared cache folder
    import stat

    import numpy as np

    from imgexp.chunks import ChunkStore
    from imgexp.metrics.confusion import write_confusion_files

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    expected = stat.S_IMODE(plain.stat().st_mode)
    chunk = ChunkStore(tmp_path / "cache").append(["a" * 64], np.zeros((1, 2)))
    write_confusion_files(tmp_path, np.array([0, 1]), np.array([0, 0]), ["a", "b"], "test")
    for path in [chunk, *tmp_path.glob("confusion*")]:
        assert stat.S_IMODE(path.stat().st_mode) == expected, path
    assert _leftovers(chunk.parent) == [] and _leftovers(tmp_path) == []


def test_no_module_writes_a_file_through_a_rename_of_its_own():
    # one implementation of "write a file safely": a hand-made temp + rename skips the
    # permissions, the fsync and the full-disk message of imgexp.atomic
    import re

    src = Path(__file__).resolve().parents[1] / "src"
    pattern = re.compile(r"\bmkstemp\(|\bNamedTemporaryFile\(|\bos\.(replace|rename)\(|"
                         r"\btmp\w*\.(replace|rename)\(")
    found = [f"{path.relative_to(src)}:{n}" for path in src.rglob("*.py")
             if path.name != "atomic.py"
             for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []
