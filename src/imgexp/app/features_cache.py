"""Embeddings of image files, computed once per (file content, checkpoint) and kept on disk.

Keys follow the select stage's cache rule: the sha256 of each file's bytes plus the identity
of the extractor (here the checkpoint's sha256), so renamed or moved files are not recomputed
and a retrained model never reuses stale vectors. The cache is rewritten atomically after
every chunk, so an interrupted run resumes where it stopped.
"""

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from imgexp.app.recognise import to_batch
from imgexp.data import UnreadableImage, load_rgb

CHUNK = 64


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read(cache_file: Path) -> dict[str, np.ndarray]:
    if not cache_file.is_file():
        return {}
    with np.load(cache_file) as z:
        return dict(zip(z["keys"].tolist(), z["vectors"], strict=True))


def _write(cache_file: Path, vectors: dict[str, np.ndarray]) -> None:
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=f".{cache_file.name}.", suffix=".npz")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, keys=np.array(list(vectors)), vectors=np.stack(list(vectors.values())))
    os.replace(tmp, cache_file)


def embed_files(model, paths: list[Path], cache_dir: Path, extractor_id: str,
                progress: Callable[[float], None] | None = None
                ) -> tuple[np.ndarray, list[int], list[str]]:
    """(vectors of the readable files, their indices in `paths`, "path: reason" of the others)."""
    size = int(model.config["data"]["image_size"])
    cache_file = Path(cache_dir) / f"embeddings-{extractor_id}.npz"
    cached = _read(cache_file)
    keys = [file_sha256(p) for p in paths]
    todo = [i for i, key in enumerate(keys) if key not in cached]
    skipped: dict[int, str] = {}
    for start in range(0, len(todo), CHUNK):
        images, chunk_keys = [], []
        for i in todo[start:start + CHUNK]:
            try:
                images.append(load_rgb(paths[i], size))
                chunk_keys.append(keys[i])
            except UnreadableImage as exc:
                skipped[i] = f"{paths[i]}: {exc}"
        if images:
            vectors = model.embed(to_batch(images)).float().cpu().numpy()
            cached.update(zip(chunk_keys, vectors, strict=True))
            _write(cache_file, cached)
        if progress:
            progress(min(1.0, (start + CHUNK) / len(todo)))
    kept = [i for i in range(len(paths)) if i not in skipped]
    dim = next(iter(cached.values())).shape[0] if cached else 0
    vectors = np.stack([cached[keys[i]] for i in kept]) if kept else np.zeros((0, dim), np.float32)
    return vectors, kept, list(skipped.values())
