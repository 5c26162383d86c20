"""Name a file's type from its first bytes, whatever its extension says.

Pillow only says "cannot identify image file"; users need to know that their `.jpg` is an
HTML error page or a PDF to fix the scrape that produced it.
"""

# (prefix, offset, type name, is a raster image Pillow may decode)
SIGNATURES: tuple[tuple[bytes, int, str, bool], ...] = (
    (b"\xff\xd8\xff", 0, "JPEG", True),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG", True),
    (b"GIF87a", 0, "GIF", True),
    (b"GIF89a", 0, "GIF", True),
    (b"BM", 0, "BMP", True),
    (b"II*\x00", 0, "TIFF", True),
    (b"MM\x00*", 0, "TIFF", True),
    (b"WEBP", 8, "WEBP", True),
    (b"\x00\x00\x01\x00", 0, "ICO", True),
    (b"8BPS", 0, "PSD", True),
    (b"\x00\x00\x00\x0cjP  ", 0, "JPEG 2000", True),
    (b"\xffO\xffQ", 0, "JPEG 2000", True),
    (b"ftypheic", 4, "HEIC", True),
    (b"ftypheix", 4, "HEIC", True),
    (b"ftypmif1", 4, "HEIF", True),
    (b"ftypavif", 4, "AVIF", True),
    (b"%PDF", 0, "PDF document", False),
    (b"PK\x03\x04", 0, "ZIP archive", False),
    (b"\x1f\x8b", 0, "gzip archive", False),
    (b"\x7fELF", 0, "executable", False),
    (b"ftyp", 4, "video", False),
)
# Netpbm (P1..P6 then whitespace) has no fixed magic long enough for the table.
NETPBM = {b"P1", b"P2", b"P3", b"P4", b"P5", b"P6"}
# What each extension promises, to note images whose content disagrees with their name.
EXTENSION_FORMATS = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jfif": "JPEG", ".jpe": "JPEG", ".png": "PNG",
    ".gif": "GIF", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP",
    ".ppm": "PPM", ".pgm": "PPM", ".pbm": "PPM", ".pnm": "PPM", ".ico": "ICO", ".psd": "PSD",
}
CANONICAL_EXTENSION = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp",
                       "TIFF": ".tif", "WEBP": ".webp", "PPM": ".ppm", "ICO": ".ico",
                       "PSD": ".psd"}
HEAD_BYTES = 64


def sniff(head: bytes) -> tuple[str, bool]:
    """(type name, looks like a raster image) from the first HEAD_BYTES bytes of a file."""
    for magic, offset, name, is_image in SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return name, is_image
    if head[:2] in NETPBM and head[2:3].isspace():
        return "PPM", True
    text = head.lstrip().lower()
    if text.startswith((b"<svg", b"<?xml")) and b"<svg" in head.lower():
        return "SVG vector image", False
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<!--")):
        return "HTML page", False
    if _is_text(head):
        return "text file", False
    return "unknown content", False


def _is_text(head: bytes) -> bool:
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not a multi-byte character cut at HEAD_BYTES: binary
            return False
        decoded = head[:exc.start].decode("utf-8")
    return bool(decoded) and all(c.isprintable() or c in "\t\r\n\f" for c in decoded)
