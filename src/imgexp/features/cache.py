"""Features cached per source folder, keyed by file content (sha256) and extractor identity.

Layout: <cache_dir>/<extractor key>/<folder key>/ holds `identity.txt` and `folder.txt` (what the
keys stand for, for people) and `chunk-*.npz` files, each with `sha256` (64-byte strings) and
`features` (float32), written as imgexp.chunks says. The cache lives outside the source
folders: the images and their folders are never written to.
"""

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from imgexp.atomic import atomic_path, write_text_atomic, write_text_once
from imgexp.chunks import ChunkStore


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


def first_precision(cache_dir: Path, identity: str, precision: str) -> str:
    """The precision the features of `identity` (an extractor, less its precision) were first
    written in under `cache_dir`; `precision` when it is the first (concurrent shards on other
    machines all read the first one's)."""
    path = Path(cache_dir) / f"precision-{short_key(identity)}.txt"
    return write_text_once(path, f"{precision}\n").strip()


class FolderCache(ChunkStore):
    """The cached features of one source folder for one extractor."""

    def __init__(self, cache_dir: Path, identity: str, folder: Path):
        super().__init__(Path(cache_dir) / short_key(identity) / short_key(str(folder.resolve())))
        self.identity, self.folder = identity, folder

    def _ensure_dir(self) -> None:
        if not self.dir.is_dir():
            super()._ensure_dir()
            write_text_atomic(self.dir / "identity.txt", self.identity + "\n")
            write_text_atomic(self.dir / "folder.txt", str(self.folder.resolve()) + "\n")

    def write_csv(self, names: list[str], hashes: list[str], features: np.ndarray) -> Path:
        """The seed's feature.csv (file name, sha256, one column per feature), for people."""
        import pandas as pd

        self._ensure_dir()
        df = pd.DataFrame(features, columns=[f"f{i}" for i in range(features.shape[1])])
        df.insert(0, "sha256", hashes)
        df.insert(0, "file", names)
        path = self.dir / "feature.csv"
        with atomic_path(path) as tmp:
            df.to_csv(tmp, index=False, float_format="%.6g")
        return path
