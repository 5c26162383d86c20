"""imgexp-prepare on the bad inputs real collections contain: each test builds its files in
tmp_path, and run_prepare_on asserts the source tree is byte-identical afterwards and that
every file is accounted for."""

import io
import multiprocessing
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from helpers.config import compose_config
from helpers.prepare import (
    fingerprint,
    make_classes,
    read_outputs,
    run_prepare_on,
    smooth_image,
)
from imgexp.data import read_manifest
from imgexp.paths import PROJECT_ROOT
from imgexp.prepare.pipeline import run_prepare


@pytest.fixture
def root(tmp_path) -> Path:
    """Two healthy classes of 4 images each, to which a test adds its bad file."""
    root = tmp_path / "images"
    make_classes(root, {"cat": 4, "dog": 4})
    return root


def jpeg_bytes(img: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kwargs)
    return buf.getvalue()


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_zero_byte_file_is_rejected(root, tmp_path):
    (root / "cat" / "empty.jpg").touch()
    out = run_prepare_on(root, tmp_path / "run")
    assert out.rejected["cat/empty.jpg"] == "zero bytes: the file is empty"
    assert out.summary["rejected_by_reason"] == {"zero bytes": 1}
    assert len(out.manifest) == 8


def test_text_file_named_jpg_is_rejected_as_text(root, tmp_path):
    (root / "cat" / "notes.jpg").write_text("TODO: find more cat pictures\n")
    (root / "dog" / "page.jpg").write_text("<!DOCTYPE html><html><body>403</body></html>")
    out = run_prepare_on(root, tmp_path / "run")
    assert out.rejected["cat/notes.jpg"] == "not an image: the content is a text file"
    assert out.rejected["dog/page.jpg"] == "not an image: the content is a HTML page"


def test_other_contents_and_tiny_images_get_their_own_reason(root, tmp_path):
    (root / "cat" / "scan.jpg").write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj")
    (root / "cat" / "logo.png").write_text('<?xml version="1.0"?><svg xmlns="x"></svg>')
    (root / "dog" / "iphone.jpg").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(200))
    (root / "dog" / "pixel.png").write_bytes(png_bytes(smooth_image(5, (4, 3))))
    out = run_prepare_on(root, tmp_path / "run")
    assert out.rejected == {
        "cat/logo.png": "unsupported format: SVG vector image (rasterise it to PNG first)",
        "cat/scan.jpg": "not an image: the content is a PDF document",
        "dog/iphone.jpg": "unsupported format: HEIC needs a Pillow plugin (e.g. pillow-heif) "
                          "or a conversion",
        "dog/pixel.png": "too small: 4x3 < prepare.min_size=8"}
    assert out.summary["rejected_by_reason"] == {"not an image": 1, "too small": 1,
                                                 "unsupported format": 2}


def test_truncated_jpeg_is_rejected_although_verify_passes_it(root, tmp_path):
    data = jpeg_bytes(smooth_image(7, (64, 64)), quality=95)
    (root / "cat" / "cut.jpg").write_bytes(data[: len(data) // 2])
    with Image.open(root / "cat" / "cut.jpg") as img:
        img.verify()  # the seeds' is_image() check: passes a JPEG cut in half
    out = run_prepare_on(root, tmp_path / "run")
    assert out.rejected["cat/cut.jpg"].startswith(
        "truncated: cannot decode (OSError: image file is truncated")
    assert "cat/cut.jpg" not in {r["path"] for r in out.manifest}


def test_truncated_png_is_rejected(root, tmp_path):
    rng = np.random.default_rng(3)
    data = png_bytes(Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)))
    (root / "dog" / "cut.png").write_bytes(data[: int(len(data) * 0.6)])
    out = run_prepare_on(root, tmp_path / "run")
    assert out.rejected["dog/cut.png"].startswith("truncated:")
    assert out.summary["rejected_by_reason"] == {"truncated": 1}


def test_image_with_a_wrong_extension_is_accepted_and_noted(root, tmp_path):
    (root / "cat" / "really_png.jpg").write_bytes(png_bytes(smooth_image(11)))
    (root / "dog" / "really_jpeg.txt").write_bytes(jpeg_bytes(smooth_image(12, (40, 30))))
    out = run_prepare_on(root, tmp_path / "run")
    assert out.notes["cat/really_png.jpg"] == ["extension .jpg but the content is PNG"]
    assert out.notes["dog/really_jpeg.txt"] == ["extension .txt but the content is JPEG"]
    assert out.row("dog/really_jpeg.txt")["width"] == "40"
    assert out.summary["formats"] == {"JPEG": 1, "PNG": 9}


def test_animated_gif_uses_its_first_frame_and_is_noted(root, tmp_path):
    frames = [smooth_image(20 + i, (30, 20)).convert("P") for i in range(3)]
    frames[0].save(root / "cat" / "anim.gif", save_all=True, append_images=frames[1:],
                   duration=100, loop=0)
    out = run_prepare_on(root, tmp_path / "run")
    assert out.notes["cat/anim.gif"] == ["3 frames: the first one is used"]
    assert (out.row("cat/anim.gif")["width"], out.row("cat/anim.gif")["height"]) == ("30", "20")


def test_cmyk_jpeg_is_accepted_and_noted(root, tmp_path):
    smooth_image(30).convert("CMYK").save(root / "cat" / "print.jpg")
    out = run_prepare_on(root, tmp_path / "run")
    assert out.notes["cat/print.jpg"] == ["CMYK converted to RGB"]
    assert out.summary["modes"]["CMYK"] == 1


def test_16_bit_png_is_accepted_and_noted(root, tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 48, dtype=np.uint16), (24, 1))
    Image.fromarray(ramp).save(root / "dog" / "deep.png")
    with Image.open(root / "dog" / "deep.png") as img:
        assert img.mode.startswith("I;16")
    out = run_prepare_on(root, tmp_path / "run")
    assert out.notes["dog/deep.png"] == ["I;16 (more than 8 bits) scaled to 8 bits"]
    assert (out.row("dog/deep.png")["width"], out.row("dog/deep.png")["height"]) == ("48", "24")


def test_palette_png_with_transparency_is_accepted_and_noted(root, tmp_path):
    img = smooth_image(40).convert("P", palette=Image.ADAPTIVE, colors=16)
    img.save(root / "cat" / "sprite.png", transparency=0)
    out = run_prepare_on(root, tmp_path / "run")
    assert out.notes["cat/sprite.png"] == ["transparency composited on white"]
    assert out.summary["modes"]["P"] == 1


def test_exif_rotated_jpeg_reports_its_size_after_orientation(root, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: stored 60x20, shown 20x60
    smooth_image(50, (60, 20)).save(root / "dog" / "phone.jpg", exif=exif)
    out = run_prepare_on(root, tmp_path / "run")
    row = out.row("dog/phone.jpg")
    assert (row["width"], row["height"]) == ("20", "60")
    assert out.notes["dog/phone.jpg"] == ["EXIF orientation 6 applied"]


@pytest.fixture(scope="module")
def hundred_mp_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("big") / "images"
    make_classes(root, {"cat": 3, "dog": 3})
    img = Image.new("L", (10_000, 10_000), 128)
    ImageDraw.Draw(img).ellipse((2000, 2000, 8000, 8000), fill=30)
    img.save(root / "cat" / "huge.jpg", quality=60)
    return root


def test_100_megapixel_jpeg_is_checked_within_max_pixels(hundred_mp_root, tmp_path,
                                                         monkeypatch):
    out = run_prepare_on(hundred_mp_root, tmp_path / "run")
    assert (out.row("cat/huge.jpg")["width"], out.row("cat/huge.jpg")["height"]) == \
        ("10000", "10000")
    monkeypatch.setenv("IMGEXP_MAX_IMAGE_PIXELS", "50000000")
    out = run_prepare_on(hundred_mp_root, tmp_path / "strict")
    assert out.rejected["cat/huge.jpg"] == ("decompression bomb: 10000x10000 = 100.0 MP > "
                                            "IMGEXP_MAX_IMAGE_PIXELS=50000000 (raise it to "
                                            "decode this image)")


def test_100_megapixel_jpeg_check_does_not_blow_up_memory(hundred_mp_root):
    # peak RSS growth of a fresh process checking the file: a full decode needs >= 100 MB
    code = ("import resource, sys\n"
            "from imgexp.prepare.checks import CheckOptions, inspect_file\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "check = inspect_file(sys.argv[1], 'cat/huge.jpg', CheckOptions())\n"
            "assert check.ok, check.reason\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n")
    done = subprocess.run([sys.executable, "-c", code, str(hundred_mp_root)], check=True,
                          capture_output=True, text=True, env=_env())
    assert int(done.stdout) < 40  # MB


def test_non_utf8_name_is_rejected_with_the_fix_and_odd_names_are_kept(root, tmp_path):
    latin1 = os.fsdecode(b"caf\xe9 cr\xe8me.png")
    smooth_image(60).save(root / "cat" / latin1)
    odd = 'my dog, "Rex" (2) é.png'
    smooth_image(61).save(root / "dog" / odd)
    out = run_prepare_on(root, tmp_path / "run")
    assert out.rejected[f"cat/{latin1}"] == (
        "non-UTF-8 name: a valid PNG whose file name is not UTF-8; rename it "
        "(convmv -f latin1 -t utf8 --notest -r DATA_ROOT)")
    assert b"cat/caf\xe9 cr\xe8me.png" in (out.run_dir / "rejected.csv").read_bytes()
    assert out.row(f"dog/{odd}")["label"] == "dog"
    (out.run_dir / "manifest.csv").read_bytes().decode("utf-8")  # the manifest stays UTF-8
    _, _, samples = read_manifest(out.run_dir / "manifest.csv")
    assert f"dog/{odd}" in {s.path for s in samples}


def test_hidden_and_system_files_are_ignored(root, tmp_path):
    smooth_image(70).save(root / "cat" / ".hidden.png")
    (root / "cat" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "dog" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / "dog" / ".ipynb_checkpoints").mkdir()
    smooth_image(71).save(root / "dog" / ".ipynb_checkpoints" / "copy.png")
    (root / ".DS_Store").write_bytes(b"\x00")
    out = run_prepare_on(root, tmp_path / "run")
    assert len(out.manifest) == 8 and out.summary["rejected"] == 0
    assert out.rejected == {
        ".DS_Store": "ignored: system file .DS_Store",
        "cat/.DS_Store": "ignored: system file .DS_Store",
        "cat/.hidden.png": "ignored: hidden file",
        "dog/.ipynb_checkpoints": "ignored: hidden folder (not scanned)",
        "dog/Thumbs.db": "ignored: system file Thumbs.db"}


def test_symlink_loop_is_rejected_and_not_followed(root, tmp_path):
    os.symlink("b.jpg", root / "cat" / "a.jpg")
    os.symlink("a.jpg", root / "cat" / "b.jpg")
    os.symlink("..", root / "dog" / "up")  # a folder loop: must not be walked
    out = run_prepare_on(root, tmp_path / "run")
    assert out.rejected["cat/a.jpg"] == "symlink loop: the link resolves back to itself"
    assert out.rejected["cat/b.jpg"] == "symlink loop: the link resolves back to itself"
    assert out.rejected["dog/up"] == "ignored: folder symlink not followed"
    assert len(out.manifest) == 8


def test_unreadable_file_is_rejected_with_permission_denied(tmp_path):
    # root reads any file: then the stage runs in a child process that became user nobody,
    # on a tree under a folder nobody can reach (pytest's tmp_path is private to root)
    as_root = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="imgexp-perm-")) if as_root else tmp_path
    try:
        base.chmod(0o755)
        root = base / "images"
        make_classes(root, {"cat": 4, "dog": 4})
        (root / "cat" / "secret.png").write_bytes(png_bytes(smooth_image(80)))
        (root / "cat" / "secret.png").chmod(0o000)
        run_dir = base / "run"
        run_dir.mkdir()
        run_dir.chmod(0o777)
        before = fingerprint(root)
        if as_root:
            child = multiprocessing.get_context("fork").Process(
                target=_prepare_as_nobody, args=(root, run_dir))
            child.start()
            child.join()
            assert child.exitcode == 0
            out = read_outputs(run_dir)
        else:
            out = run_prepare_on(root, run_dir)
        assert out.rejected["cat/secret.png"] == \
            "permission denied: the file cannot be read (check its permissions)"
        assert len(out.manifest) == 8
        assert fingerprint(root) == before
    finally:
        if as_root:
            shutil.rmtree(base)


def _prepare_as_nobody(root: Path, run_dir: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    os.setgid(nobody.pw_gid)
    os.setuid(nobody.pw_uid)
    with pytest.raises(PermissionError):
        (root / "cat" / "secret.png").read_bytes()
    run_prepare(compose_config("prepare", [f"data.root={root}", "prepare.progress=false",
                                           "prepare.workers=1"], run_dir))


def test_empty_class_folder_is_left_out_with_a_warning(root, tmp_path):
    (root / "empty").mkdir()
    (root / "broken").mkdir()
    (root / "broken" / "x.jpg").write_text("not an image")
    out = run_prepare_on(root, tmp_path / "run")
    assert out.meta["classes"] == ["cat", "dog"]
    assert out.summary["empty_classes"] == ["broken", "empty"]
    assert "class 'empty' has no usable image: it is left out of the class list" in \
        out.summary["warnings"]


def test_nested_folders_inside_a_class_are_included_with_their_path(root, tmp_path):
    (root / "cat" / "2019" / "summer").mkdir(parents=True)
    smooth_image(90).save(root / "cat" / "2019" / "summer" / "beach.png")
    out = run_prepare_on(root, tmp_path / "run")
    assert out.row("cat/2019/summer/beach.png")["label"] == "cat"
    assert out.meta["classes"] == ["cat", "dog"]


def _env(**extra) -> dict:
    return {**os.environ, "PROJECT_ROOT": str(PROJECT_ROOT),
            "PYTHONPATH": str(PROJECT_ROOT / "src"), "WANDB_MODE": "offline", **extra}
