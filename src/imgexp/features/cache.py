"""Features cached per source folder, keyed by file content (sha256) and extractor identity.

Layout: <cache_dir>/<extractor key>/<folder key>/ holds `identity.txt` and `folder.txt` (what the
keys stand for, for people) and `chunk-*.npz` files, each with `sha256` (64-byte strings) and
`features` (float32). A chunk is written to a temporary file and renamed into place, so a run
killed half-way keeps every finished chunk and loses at most the one being filled. The cache
lives outside the source folders: the images and their folders are never written to.
"""

import hashlib
import logging
import os
import tempfile
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
# a folder gathering more chunks than this is compacted into one at the end of a run
MAX_CHUNKS = 16


def short_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str | None:
    """Content hash of a file; None when it cannot be read (reported later as unreadable)."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def hash_files(paths: list[Path], threads: int = 4) -> list[str | None]:
    # hashlib releases the GIL on large buffers: threads overlap disk reads and hashing
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(file_sha256, paths, chunksize=64))


class FolderCache:
    """The cached features of one source folder for one extractor."""

    def __init__(self, cache_dir: Path, identity: str, folder: Path):
        self.dir = Path(cache_dir) / short_key(identity) / short_key(str(folder.resolve()))
        self.identity, self.folder = identity, folder

    def chunks(self) -> list[Path]:
        return sorted(self.dir.glob("chunk-*.npz")) if self.dir.is_dir() else []

    def load(self) -> dict[str, np.ndarray]:
        """sha256 -> feature row, over every complete chunk (later chunks win)."""
        table: dict[str, np.ndarray] = {}
        for chunk in self.chunks():
            try:
                with np.load(chunk) as data:
                    hashes, feats = data["sha256"], data["features"]
            except (OSError, ValueError, KeyError) as exc:
                # only renamed-into-place files are read, so this is outside damage: recompute
                log.warning("ignoring unreadable cache chunk %s (%s)", chunk, exc)
                continue
            table.update(zip((h.decode() for h in hashes), feats, strict=True))
        return table

    def _ensure_dir(self) -> None:
        if not self.dir.is_dir():
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "identity.txt").write_text(self.identity + "\n")
            (self.dir / "folder.txt").write_text(str(self.folder.resolve()) + "\n")

    def append(self, hashes: list[str], features: np.ndarray) -> Path:
        self._ensure_dir()
        final = self.dir / f"chunk-{uuid.uuid4().hex}.npz"
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, sha256=np.asarray(hashes, dtype="S64"),
                         features=np.asarray(features, dtype=np.float32))
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return final

    def compact(self, keep: Iterable[str]) -> None:
        """Rewrite many chunks as one holding only the hashes still present in the folder.

        The merged chunk is in place before the old ones go, so a crash leaves duplicates
        (harmless), never a hole.
        """
        old = self.chunks()
        if len(old) <= MAX_CHUNKS:
            return
        table = self.load()
        hashes = [h for h in dict.fromkeys(keep) if h in table]
        if hashes:
            self.append(hashes, np.stack([table[h] for h in hashes]))
        for chunk in old:
            chunk.unlink(missing_ok=True)

    def clear(self) -> None:
        for chunk in self.chunks():
            chunk.unlink(missing_ok=True)

    def write_csv(self, names: list[str], hashes: list[str], features: np.ndarray) -> Path:
        """The seed's feature.csv (file name, sha256, one column per feature), for people."""
        import pandas as pd

        self._ensure_dir()
        df = pd.DataFrame(features, columns=[f"f{i}" for i in range(features.shape[1])])
        df.insert(0, "sha256", hashes)
        df.insert(0, "file", names)
        path = self.dir / "feature.csv"
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-", suffix=".csv")
        os.close(fd)
        df.to_csv(tmp, index=False, float_format="%.6g")
        os.replace(tmp, path)
        return path
