"""data=digits with a data.root that holds the user's own images must never touch them (a
stranger's run lost a photo folder this way: it was taken for a partial export and removed)."""

import os
import stat

import pytest

from imgexp.data.digits import COMPLETE_MARKER, ensure_digits
from imgexp.errors import ImgexpError


def test_a_folder_of_the_users_images_is_refused_and_left_as_it_was(tmp_path):
    photos = tmp_path / "photos"
    (photos / "cat").mkdir(parents=True)
    (photos / "cat" / "a.jpg").write_bytes(b"not really a jpeg")
    with pytest.raises(ImgexpError, match="data=folder"):
        ensure_digits(photos)
    assert sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*")) == ["cat",
                                                                                   "cat/a.jpg"]
    assert (photos / "cat" / "a.jpg").read_bytes() == b"not really a jpeg"


def test_an_empty_folder_gets_the_digits_with_the_users_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        root = tmp_path / "digits"
        root.mkdir()
        ensure_digits(root)
    finally:
        os.umask(old)
    assert (root / COMPLETE_MARKER).exists() and len(list(root.glob("*/*.png"))) == 1797
    assert stat.S_IMODE(root.stat().st_mode) == 0o755


def test_an_export_published_meanwhile_by_another_worker_is_kept(tmp_path, monkeypatch):
    """Two sweep workers started together both export: the second used to take the first's
    fresh export for an interrupted one and remove it while the first was reading it."""
    import shutil

    import sklearn.datasets

    done = ensure_digits(tmp_path / "done")
    root = tmp_path / "digits"
    real = sklearn.datasets.load_digits

    def other_worker_publishes_meanwhile(*args, **kwargs):
        shutil.copytree(done, root)
        return real(*args, **kwargs)

    inode = None

    def remember(*args, **kwargs):
        nonlocal inode
        out = other_worker_publishes_meanwhile(*args, **kwargs)
        inode = root.stat().st_ino
        return out

    monkeypatch.setattr(sklearn.datasets, "load_digits", remember)
    assert ensure_digits(root) == root
    assert root.stat().st_ino == inode  # the other worker's folder, not removed or replaced
    assert len(list(root.glob("*/*.png"))) == 1797
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
