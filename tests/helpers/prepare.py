"""Builders and checks shared by the imgexp-prepare tests.

`run_prepare_on(root, tmp_path, ...)` runs the stage in-process and asserts the two promises
every test relies on: the source tree is byte-identical afterwards (names, contents, link
targets, permissions, mtimes) and every file under the root is accounted for (manifest,
duplicates.csv or rejected.csv).
"""

import hashlib
import io
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from helpers.config import compose_config
from imgexp.prepare.pipeline import run_prepare
from imgexp.prepare.tables import read_csv


def smooth_image(seed: int, size=(32, 32), mode="RGB") -> Image.Image:
    """A distinct image with low-frequency content (as photos have): perceptual hashes of
    two seeds are far apart, while resized or re-encoded copies of one seed stay close."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray((rng.random((4, 4, 3)) * 255).astype(np.uint8))
    return small.resize(size, Image.BICUBIC).convert(mode)


def jpeg_copy(img: Image.Image, scale: float, quality: int) -> Image.Image:
    """A near copy: resized by `scale`, re-encoded as JPEG at `quality`."""
    w, h = img.size
    buf = io.BytesIO()
    img.resize((round(w * scale), round(h * scale)), Image.BICUBIC).save(buf, "JPEG",
                                                                         quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def make_classes(root: Path, per_class: dict[str, int], seed: int = 0, ext: str = ".png"
                 ) -> list[Path]:
    paths = []
    for c, (name, n) in enumerate(sorted(per_class.items())):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            path = root / name / f"{name}_{i:02d}{ext}"
            smooth_image(seed * 10_000 + c * 100 + i).save(path)
            paths.append(path)
    return paths


def fingerprint(root: Path) -> dict:
    """Everything about a tree that a careless tool could change (atime excepted)."""
    out = {}
    for folder, dirs, files in os.walk(os.fsencode(root)):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, os.fsencode(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", st.st_mode)
            else:
                out[rel] = ("file", _sha256(path), st.st_size, st.st_mode, st.st_mtime_ns)
    return out


def _sha256(path: bytes) -> str:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except PermissionError:  # not root: the permission test's file; size/mode/mtime still count
        return "unreadable"


@dataclass
class Outputs:
    run_dir: Path
    manifest: list[dict]
    meta: dict
    rejected: dict[str, str]
    duplicates: list[dict]
    notes: dict[str, list[str]]
    summary: dict

    def row(self, path: str) -> dict:
        return next(r for r in self.manifest if r["path"] == path)


def read_outputs(run_dir: Path) -> Outputs:
    notes: dict[str, list[str]] = {}
    for r in read_csv(run_dir / "notes.csv"):
        notes.setdefault(r["path"], []).append(r["note"])
    return Outputs(run_dir, read_csv(run_dir / "manifest.csv"),
                   json.loads((run_dir / "manifest.json").read_text()),
                   {r["path"]: r["reason"] for r in read_csv(run_dir / "rejected.csv")},
                   read_csv(run_dir / "duplicates.csv"), notes,
                   json.loads((run_dir / "summary.json").read_text()))


def run_prepare_on(root: Path, run_dir: Path, *overrides: str, touches_source=False) -> Outputs:
    before = fingerprint(root)
    cfg = compose_config("prepare", [f"data.root={root}", "prepare.progress=false",
                                     "prepare.workers=2", *overrides], run_dir)
    run_prepare(cfg)
    out = read_outputs(run_dir)
    if not touches_source:
        assert fingerprint(root) == before, "the source tree changed"
        assert_every_file_accounted_for(root, out)
    return out


def assert_every_file_accounted_for(root: Path, out: Outputs) -> None:
    listed = ({r["path"] for r in out.manifest} | {d["path"] for d in out.duplicates}
              | set(out.rejected))
    ignored_folders = tuple(p + "/" for p, why in out.rejected.items() if "folder" in why)
    for folder, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            rel = Path(folder, name).relative_to(root).as_posix()
            assert rel in listed or rel.startswith(ignored_folders), f"{rel} is unaccounted for"
