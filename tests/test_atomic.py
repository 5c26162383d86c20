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
