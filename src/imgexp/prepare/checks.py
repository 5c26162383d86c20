"""Check each file the way training will read it, and say precisely what is wrong with it.

`verify()` passes JPEGs cut in half, so every image is decoded (`load()`). JPEGs are decoded
at a reduced DCT scale (draft mode): libjpeg still reads every compressed byte, so cut or
corrupt files are caught, at a fraction of the cost and memory of a full-resolution decode.
Files are checked in worker processes; each reads a file once (big ones are streamed), hashes
it, sniffs its type and decodes it.
"""

import errno
import functools
import hashlib
import io
import multiprocessing
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import imagehash
from PIL import ExifTags, Image, ImageOps
from tqdm import tqdm

from imgexp.data.image_io import UnreadableImage, check_pixels, decode_failure, to_rgb
from imgexp.data.names import is_utf8
from imgexp.prepare.sniff import EXTENSION_FORMATS, HEAD_BYTES, sniff
from imgexp.progress import progress as progress_bar

# Formats Pillow can name but not decode without a plugin.
NEEDS_PLUGIN = {"HEIC", "HEIF", "AVIF", "JPEG 2000"}
# Pillow names phone JPEGs with a depth map "MPO"; they are JPEGs to every other tool.
FORMAT_ALIASES = {"MPO": "JPEG"}
ROTATING_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height
READ_WHOLE_BELOW = 16 * 2**20  # bytes; bigger files are hashed as a stream
PHASH_INPUT_SIDE = 64  # pHash looks at a 32x32 reduction: decode JPEGs at >= twice that


@dataclass(frozen=True)
class CheckOptions:
    min_size: int = 8                   # shorter side (after EXIF rotation) below this: rejected
    full_decode: bool = False           # JPEGs at full resolution rather than DCT-scaled
    phash: bool = False                 # perceptual hash, for near-duplicate search


@dataclass
class FileCheck:
    path: str                           # relative to the data root, POSIX separators
    reason: str = ""                    # why it is rejected ("code: detail"); empty = accepted
    code: str = ""                      # the reason's stable short code, for counts
    notes: tuple[str, ...] = ()         # accepted with a remark (wrong extension, CMYK, ...)
    sha256: str = ""
    width: int = 0                      # after EXIF orientation
    height: int = 0
    format: str = ""
    mode: str = ""
    n_bytes: int = 0
    mtime: float = 0.0
    phash: int | None = None

    @property
    def ok(self) -> bool:
        return not self.reason


def inspect_file(root: str, rel: str, options: CheckOptions) -> FileCheck:
    check = FileCheck(rel)
    notes: list[str] = []
    try:
        _inspect(os.path.join(root, rel), check, notes, options)
        if not is_utf8(rel):
            # a manifest is UTF-8 text read by pandas in every stage: such a name cannot be
            # listed faithfully, so the image is left out with the command that fixes it
            raise UnreadableImage(f"non-UTF-8 name: a valid {check.format} whose file name is "
                                  "not UTF-8; rename it (convmv -f latin1 -t utf8 --notest -r "
                                  "DATA_ROOT)", "non-UTF-8 name")
    except UnreadableImage as exc:
        check.reason, check.code = str(exc), exc.reason
    check.notes = tuple(notes)
    return check


def _inspect(path: str, check: FileCheck, notes: list[str], opt: CheckOptions) -> None:
    st = _stat(path)
    check.n_bytes, check.mtime = st.st_size, st.st_mtime
    if st.st_size == 0:
        raise UnreadableImage("zero bytes: the file is empty", "zero bytes")
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below, after Pillow is done with it
    except PermissionError:
        raise UnreadableImage("permission denied: the file cannot be read (check its "
                              "permissions)", "permission denied") from None
    with f:
        source = _hash(f, st.st_size, check)
        kind, is_image = sniff(source.read(HEAD_BYTES))
        source.seek(0)
        with _open(source, kind, is_image) as img:
            try:
                _describe(img, Path(path).suffix.lower(), check, notes, opt)
                _decode(img, check, opt)
            except UnreadableImage:
                raise
            except Exception as exc:  # reading EXIF of a cut PNG decodes it, and fails there
                raise decode_failure(exc) from None


def _hash(f, size: int, check: FileCheck):
    """sha256 of the file; returns what the decoder should read (the bytes, or the file)."""
    try:
        if size <= READ_WHOLE_BELOW:  # one read serves the hash and the decoder
            source = io.BytesIO(f.read())
            check.sha256 = hashlib.sha256(source.getbuffer()).hexdigest()
            return source
        # streamed: the bytes of a big file are not held in memory beside its pixels
        check.sha256 = hashlib.file_digest(f, "sha256").hexdigest()
        f.seek(0)
        return f
    except OSError as exc:  # an I/O error on a failing disk or a vanished network share
        raise UnreadableImage(f"unreadable: {exc.strerror or exc}", "unreadable") from None


def _stat(path: str) -> os.stat_result:
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnreadableImage("symlink loop: the link resolves back to itself",
                                  "symlink loop") from None
        if os.path.islink(path):
            raise UnreadableImage(f"broken symlink: its target {os.readlink(path)} does not "
                                  "exist", "broken symlink") from None
        if isinstance(exc, PermissionError):
            raise UnreadableImage("permission denied: cannot stat the file",
                                  "permission denied") from None
        raise UnreadableImage(f"unreadable: {exc.strerror}", "unreadable") from None
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableImage("not a regular file: a fifo, socket or device",
                              "not a regular file")
    return st


def _open(f, kind: str, is_image: bool) -> Image.Image:
    if kind == "SVG vector image":
        raise UnreadableImage("unsupported format: SVG vector image (rasterise it to PNG first)",
                              "unsupported format")
    if not is_image and kind != "unknown content":
        raise UnreadableImage(f"not an image: the content is a {kind}", "not an image")
    try:
        return Image.open(f)
    except Exception as exc:  # UnidentifiedImageError, OSError, SyntaxError, ...
        if kind == "unknown content":
            raise UnreadableImage("not an image: no known image signature",
                                  "not an image") from None
        if kind in NEEDS_PLUGIN:
            raise UnreadableImage(f"unsupported format: {kind} needs a Pillow plugin "
                                  "(e.g. pillow-heif) or a conversion", "unsupported format"
                                  ) from None
        if "truncated" in str(exc).lower():
            raise UnreadableImage(f"truncated: {kind} header cut short", "truncated") from None
        raise UnreadableImage(f"corrupt: {kind} signature but an unreadable header "
                              f"({type(exc).__name__})", "corrupt") from None


def _describe(img: Image.Image, suffix: str, check: FileCheck, notes: list[str],
              opt: CheckOptions) -> None:
    """Header facts: format, mode, size after EXIF rotation, and what the user should know."""
    fmt = FORMAT_ALIASES.get(img.format, img.format) or "unknown"
    check.format, check.mode = fmt, img.mode
    w, h = img.size
    check_pixels(w, h)
    if EXTENSION_FORMATS.get(suffix) != fmt:
        notes.append(f"extension {suffix or '(none)'} but the content is {fmt}")
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
        notes.append(f"{frames} frames: the first one is used")
    orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
    if orientation in ROTATING_ORIENTATIONS:
        w, h = h, w
    if orientation not in (1, 0):
        notes.append(f"EXIF orientation {orientation} applied")
    notes.extend(_mode_notes(img))
    if min(w, h) < opt.min_size:
        raise UnreadableImage(f"too small: {w}x{h} < prepare.min_size={opt.min_size}",
                              "too small")
    check.width, check.height = w, h


def _mode_notes(img: Image.Image) -> list[str]:
    if img.mode == "CMYK":
        return ["CMYK converted to RGB"]
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        return [f"{img.mode} (more than 8 bits) scaled to 8 bits"]
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        return ["transparency composited on white"]
    return []


def _decode(img: Image.Image, check: FileCheck, opt: CheckOptions) -> None:
    if check.format == "JPEG" and not opt.full_decode:
        # the smallest DCT scale (1/8) unless the perceptual hash needs pixels to look at
        target = PHASH_INPUT_SIDE if opt.phash else 1
        img.draft(img.mode, (target, target))
    try:
        img.load()
    except Exception as exc:
        raise decode_failure(exc) from None
    try:
        to_rgb(img.crop((0, 0, 1, 1)))  # proves the mode converts, without a full-size copy
    except (ValueError, OSError) as exc:
        raise UnreadableImage(f"unsupported mode: {img.mode} cannot be converted to RGB "
                              f"({exc})", "unsupported mode") from None
    if opt.phash:
        check.phash = int(str(imagehash.phash(to_rgb(ImageOps.exif_transpose(img)))), 16)


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def inspect_all(root: str | Path, rel_paths: list[str], options: CheckOptions,
                workers: int | None = None, progress: bool = True) -> list[FileCheck]:
    """Check every file, in `workers` processes; results in rel_paths order."""
    workers = workers or default_workers()
    check = functools.partial(inspect_file, str(root), options=options)
    bar = progress_bar(total=len(rel_paths), unit="file", desc="checking", enabled=progress)
    with bar:
        if workers <= 1 or len(rel_paths) < 2 * workers:
            results = []
            for rel in rel_paths:
                results.append(check(rel))
                bar.update()
        else:
            results = _in_processes(check, rel_paths, workers, bar)
    order = {rel: i for i, rel in enumerate(rel_paths)}
    return sorted(results, key=lambda c: order[c.path])


def _in_processes(check, rel_paths: list[str], workers: int, bar: tqdm) -> list[FileCheck]:
    # fork: workers inherit the imported modules instead of re-importing torch (seconds each)
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    chunk = max(1, min(64, len(rel_paths) // (workers * 8)))
    results = []
    with ctx.Pool(workers) as pool:
        for result in pool.imap_unordered(check, rel_paths, chunksize=chunk):
            results.append(result)
            bar.update()
    return results
