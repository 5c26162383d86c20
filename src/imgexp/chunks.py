"""Rows keyed by content, kept on disk as chunks: what the feature cache of select, audit and
the app, and the descriptor backbone's cache, have in common.

A store is a folder of `chunk-*.npz` files, each with `sha256` (64-byte keys) and `features`
(float32 rows). A chunk is written atomically (imgexp.atomic), so a run killed
half-way keeps every finished chunk and loses at most the one being written; processes that
share a store (shards, DDP ranks) never write the same file.
"""

import logging
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from imgexp.atomic import atomic_path

log = logging.getLogger(__name__)
# a store gathering more chunks than this is compacted into one
MAX_CHUNKS = 16


class ChunkStore:
    def __init__(self, directory: Path):
        self.dir = Path(directory)

    def chunks(self) -> list[Path]:
        return sorted(self.dir.glob("chunk-*.npz")) if self.dir.is_dir() else []

    def load(self) -> dict[str, np.ndarray]:
        """key -> row, over every complete chunk (later chunks win)."""
        table: dict[str, np.ndarray] = {}
        for chunk in self.chunks():
            try:
                with np.load(chunk) as data:
                    keys, rows = data["sha256"], data["features"]
            except (OSError, ValueError, KeyError) as exc:
                # only renamed-into-place files are read, so this is outside damage: recompute
                log.warning("ignoring unreadable cache chunk %s (%s)", chunk, exc)
                continue
            table.update(zip((k.decode() for k in keys), rows, strict=True))
        return table

    def _ensure_dir(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)

    def append(self, keys: list[str], rows: np.ndarray) -> Path:
        self._ensure_dir()
        final = self.dir / f"chunk-{uuid.uuid4().hex}.npz"
        with atomic_path(final) as tmp:
            np.savez(tmp, sha256=np.asarray(keys, dtype="S64"),
                     features=np.asarray(rows, dtype=np.float32))
        return final

    def compact(self, keep: Iterable[str] | None = None) -> None:
        """Rewrite many chunks as one, holding only the keys in `keep` (all when None).

        The merged chunk is in place before the old ones go, so a crash leaves duplicates
        (harmless), never a hole.
        """
        old = self.chunks()
        if len(old) <= MAX_CHUNKS:
            return
        table = self.load()
        keys = list(table) if keep is None else [k for k in dict.fromkeys(keep) if k in table]
        if keys:
            self.append(keys, np.stack([table[k] for k in keys]))
        for chunk in old:
            chunk.unlink(missing_ok=True)

    def clear(self) -> None:
        for chunk in self.chunks():
            chunk.unlink(missing_ok=True)
