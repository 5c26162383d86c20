"""audit: how well imgexp-audit's detectors work, measured on planted defects in real photos.

- near-duplicates: altered copies of photos (JPEG q30-95, resize 50-200%, crop <= 10%,
  brightness/contrast +-20%, rotation +-5 deg, scanner noise) among every photo of their class
  (the hard negatives: other photos of the same hand sign). Precision and recall of the pairs at
  the default threshold, against prepare's pHash (radius 4) on the same files.
- quality: dark, overexposed, blurred, uniform, tiny and odd-aspect versions of photos; recall
  per kind and the share of the clean photos flagged.
- label errors: 5% of the labels flipped at random, on the built-in digits and on the photos;
  precision/recall of confident learning vs the plain "k-NN disagrees with the label" rule, on
  the default features (HOG + pixels) and on the 16x16 pictures alone.
- speed: images/s of the audit's reading and checks (no model) vs prepare's file checks.
- neighbour search growth: the index search (faiss IVF) from 50k to 200k 256-d vectors (planted
  noisy copies among clustered vectors), the share of the planted pairs it finds, and the exact
  search at 50k for comparison.
- large collection (`--large`, not in the default run: it takes minutes): the plain
  `imgexp-audit data=folder data.root=DIR` on 60,000 32x32 PNGs (`train/` 50k + `test/` 10k,
  augmented copies of the photos), timed once with the load average.

    python -m benchmarks.bench_audit [--quick] [--root DIR] [--large]
"""

import argparse
import io
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imagehash
import numpy as np
from hydra import compose, initialize_config_dir
from PIL import Image, ImageEnhance, ImageFilter

from benchmarks.common import REPO, real_photos_or_digits
from imgexp.audit.labels import confident_learning, disagreements, out_of_sample_probabilities
from imgexp.audit.neighbours import candidate_pairs
from imgexp.audit.pipeline import near_duplicates
from imgexp.audit.pixels import describe_all, label_vectors, search_vectors
from imgexp.audit.quality import quality_issues
from imgexp.data.digits import ensure_digits
from imgexp.data.image_io import open_image
from imgexp.data.splits import image_files
from imgexp.features.cache import hash_files
from imgexp.paths import CONFIG_DIR
from imgexp.prepare.checks import CheckOptions, inspect_all

ALTERATIONS = ("jpeg", "resize", "crop", "brightness_contrast", "rotate", "noise")
DEFECTS = ("dark", "overexposed", "blurry", "low_information", "tiny", "odd_aspect")


def audit_cfg():
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose("audit", overrides=["data.root=unused"]).audit


def alter(img: Image.Image, kind: str, r: random.Random) -> Image.Image:
    w, h = img.size
    if kind == "jpeg":
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=r.randint(30, 95))
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    if kind == "resize":
        s = r.uniform(0.5, 2.0)
        return img.resize((round(w * s), round(h * s)), Image.BICUBIC)
    if kind == "crop":
        f = r.uniform(0.02, 0.10)
        dx, dy = int(w * f * r.random()), int(h * f * r.random())
        return img.crop((dx, dy, w - int(w * f) + dx, h - int(h * f) + dy))
    if kind == "brightness_contrast":
        img = ImageEnhance.Brightness(img).enhance(r.uniform(0.8, 1.2))
        return ImageEnhance.Contrast(img).enhance(r.uniform(0.8, 1.2))
    if kind == "rotate":
        corner = img.getpixel((0, 0))
        return img.rotate(r.uniform(-5, 5), resample=Image.BICUBIC, fillcolor=corner)
    noisy = np.asarray(img, float) + np.random.default_rng(r.randrange(2**32)).normal(
        0, r.uniform(3, 8), (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def defect(img: Image.Image, kind: str) -> Image.Image:
    w, h = img.size
    if kind == "dark":
        return ImageEnhance.Brightness(img).enhance(0.12)
    if kind == "overexposed":
        return ImageEnhance.Brightness(img).enhance(3.0)
    if kind == "blurry":
        return img.filter(ImageFilter.GaussianBlur(3))
    if kind == "low_information":
        mean = tuple(int(v) for v in np.asarray(img).reshape(-1, 3).mean(0))
        return Image.new("RGB", img.size, mean)
    if kind == "tiny":
        return img.resize((max(1, w // 6), max(1, h // 6)), Image.BICUBIC)
    return img.crop((0, 0, w, max(1, h // 4)))  # odd aspect: a 4:1 strip


def precision_recall(found: set, truth: set) -> tuple[float, float]:
    hit = len(found & truth)
    return (round(hit / len(found), 4) if found else 1.0), round(hit / max(len(truth), 1), 4)


def bench_duplicates(photos: list[Path], n_copies: int, tmp: Path, r: random.Random) -> dict:
    copies = []
    for n, i in enumerate(r.sample(range(len(photos)), n_copies)):
        kind = ALTERATIONS[n % len(ALTERATIONS)]
        path = tmp / f"copy{n:04d}_{kind}.png"
        alter(open_image(photos[i]), kind, r).save(path)
        copies.append((i, kind))
    paths = photos + [tmp / f"copy{n:04d}_{k}.png" for n, (_, k) in enumerate(copies)]
    sha = hash_files(paths)
    rows = describe_all(paths, sha, None)
    truth = {(i, len(photos) + n) for n, (i, _) in enumerate(copies)}
    found = {(p["i"], p["j"]) for p in near_duplicates(rows, sha, audit_cfg())[0]}
    precision, recall = precision_recall(found, truth)
    # the index search (what large sets get) on the same files
    forced = audit_cfg()
    forced.near_dup_search = "index"
    index_p, index_r = precision_recall(
        {(p["i"], p["j"]) for p in near_duplicates(rows, sha, forced)[0]}, truth)
    per_kind = {k: round(sum((i, len(photos) + n) in found for n, (i, kk) in enumerate(copies)
                             if kk == k) / sum(kk == k for _, kk in copies), 3)
                for k in ALTERATIONS}
    hashes = np.array([int(str(imagehash.phash(open_image(p))), 16) for p in paths], np.uint64)
    # prepare.near_dup's rule: 64-bit pHash within Hamming radius 4 (all pairs: n is small)
    dist = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    a, b = np.nonzero(np.triu(dist <= 4, 1))
    base_p, base_r = precision_recall(set(zip(a.tolist(), b.tolist(), strict=True)), truth)
    return {"near_dup_images": len(paths), "near_dup_planted_pairs": len(truth),
            "near_dup_precision": precision, "near_dup_recall": recall,
            "near_dup_index_search_precision": index_p, "near_dup_index_search_recall": index_r,
            "near_dup_false_pairs_among_originals":
                sum(j < len(photos) for _, j in found - truth),
            "near_dup_recall_per_alteration": per_kind,
            "phash_r4_precision": base_p, "phash_r4_recall": base_r}


def bench_quality(photos: list[Path], per_kind: int, tmp: Path, r: random.Random) -> dict:
    planted = []
    for n, i in enumerate(r.sample(range(len(photos)), per_kind * len(DEFECTS))):
        kind = DEFECTS[n % len(DEFECTS)]
        path = tmp / f"defect{n:04d}_{kind}.png"
        defect(open_image(photos[i]), kind).save(path)
        planted.append((path, kind))
    paths = photos + [p for p, _ in planted]
    rows = describe_all(paths, hash_files(paths), None)
    issues = quality_issues(rows, audit_cfg().quality)
    flagged = {(i, kind) for i, kind, _ in issues}
    recall = {k: round(sum((len(photos) + n, k) in flagged for n, (_, kk) in enumerate(planted)
                           if kk == k) / per_kind, 3) for k in DEFECTS}
    clean = {i for i, _, _ in issues if i < len(photos)}
    return {"quality_planted_per_kind": per_kind, "quality_recall": recall,
            "quality_clean_flagged_share": round(len(clean) / len(photos), 4)}


def bench_labels(root: Path, name: str, r: random.Random) -> dict:
    paths = image_files(root)
    classes = sorted({p.parent.name for p in paths})
    y = np.array([classes.index(p.parent.name) for p in paths])
    flipped = np.array(sorted(r.sample(range(len(y)), round(0.05 * len(y)))))
    noisy = y.copy()
    for i in flipped:
        noisy[i] = r.choice([c for c in range(len(classes)) if c != y[i]])
    a = audit_cfg()
    rows = describe_all(paths, hash_files(paths), None)
    truth = set(flipped.tolist())
    out = {f"labels_{name}_flipped": len(truth)}
    # the default features, then the 16x16 pictures alone (the check's features before HOG)
    for features, tag in ((label_vectors(rows), ""), (search_vectors(rows), "pixels_only_")):
        probs = out_of_sample_probabilities(features, noisy, len(classes), a.label_folds,
                                            a.label_neighbours, 0)
        p, rc = precision_recall({i for i, _, _ in confident_learning(probs, noisy)}, truth)
        bp, br = precision_recall(set(disagreements(probs, noisy).tolist()), truth)
        out |= {f"labels_{name}_{tag}cl_precision": p, f"labels_{name}_{tag}cl_recall": rc,
                f"labels_{name}_{tag}disagree_precision": bp,
                f"labels_{name}_{tag}disagree_recall": br}
    return out


def planted_vectors(n: int, copies: int, seed: int) -> tuple[np.ndarray, set]:
    """n unit 256-d vectors around n/50 centres (look-alikes), the last `copies` rows noisy
    copies of others: (vectors, planted pairs)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n // 50, 256)).astype(np.float32)
    v = centres[rng.integers(0, len(centres), n)] + rng.normal(size=(n, 256)).astype(np.float32)
    source = rng.choice(n - copies, copies, replace=False)
    v[n - copies:] = v[source] + 0.3 * rng.normal(size=(copies, 256)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v, {(int(s), n - copies + i) for i, s in enumerate(source)}


def bench_growth(n: int) -> dict:
    out, times = {}, {}
    for size, method in ((n, "exact"), (n, "index"), (4 * n, "index")):
        v, truth = planted_vectors(size, 1000, 0)
        start, cpu = time.perf_counter(), time.process_time()
        found = set(map(tuple, candidate_pairs(v, 5, 0.8, method).tolist()))
        # the ratio on CPU seconds: on a shared machine the wall time follows the others' load
        times[size, method] = time.process_time() - cpu
        out[f"neighbours_{method}_{size}_wall_s"] = round(time.perf_counter() - start, 2)
        out[f"neighbours_{method}_{size}_cpu_s"] = round(times[size, method], 2)
        out[f"neighbours_{method}_{size}_planted_recall"] = round(len(found & truth) / len(truth), 4)
    out[f"neighbour_search_growth_index_{n}_to_{4 * n}_cpu"] = round(
        times[4 * n, "index"] / times[n, "index"], 2)
    return out


def bench_speed(root: Path, photos: list[Path]) -> dict:
    start = time.perf_counter()
    rows = describe_all(photos, hash_files(photos), None)
    a = audit_cfg()
    near_duplicates(rows, [str(i) for i in range(len(photos))], a)
    quality_issues(rows, a.quality)
    audit_s = time.perf_counter() - start
    start = time.perf_counter()
    inspect_all(root, [p.relative_to(root).as_posix() for p in photos], CheckOptions(), 2,
                False)
    prepare_s = time.perf_counter() - start
    return {"speed_audit_images_per_s": round(len(photos) / audit_s, 1),
            "speed_prepare_checks_images_per_s": round(len(photos) / prepare_s, 1)}


def small_copies(photos: list[Path], folder: Path, n: int, test_share: float,
                 r: random.Random) -> None:
    """n 32x32 PNGs (CIFAR-sized) in folder/train|test/<class>/: random crops (60-100%), flips,
    small rotations and brightness changes of the photos."""
    sources = [(open_image(p, 128), p.parent.name) for p in photos]
    for i in range(n):
        img, label = sources[i % len(sources)]
        w, h = img.size
        f = r.uniform(0.6, 1.0)
        x, y = r.randint(0, int(w * (1 - f))), r.randint(0, int(h * (1 - f)))
        out = img.crop((x, y, x + int(w * f), y + int(h * f))).rotate(r.uniform(-10, 10))
        if r.random() < 0.5:
            out = out.transpose(Image.FLIP_LEFT_RIGHT)
        out = ImageEnhance.Brightness(out).enhance(r.uniform(0.7, 1.3))
        split = "test" if r.random() < test_share else "train"
        (folder / split / label).mkdir(parents=True, exist_ok=True)
        out.resize((32, 32), Image.BILINEAR).save(folder / split / label / f"{i:05d}.png")


def bench_large(photos: list[Path], tmp: Path, n: int = 60_000) -> dict:
    """The plain command on n small images, timed once as a user runs it (own process)."""
    small_copies(photos, tmp / "large", n, 1 / 6, random.Random(3))
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "imgexp.audit", "data=folder",
                    f"data.root={tmp / 'large'}", f"audit.cache_dir={tmp / 'cache'}",
                    f"hydra.run.dir={tmp / 'run'}"], check=True, cwd=REPO,
                   env={**os.environ, "PROJECT_ROOT": str(REPO)})
    wall = time.perf_counter() - start
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds: what the run costs, whatever share of the shared cores it got
    cpu_s = (cpu.ru_utime + cpu.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    summary = json.loads((tmp / "run" / "summary.json").read_text())
    return {"large_images": summary["audited"], "large_wall_s": round(wall, 1),
            "large_cpu_s": round(cpu_s, 1),
            "large_load_average_before_after": [round(load_before, 1),
                                                round(os.getloadavg()[0], 1)],
            "large_near_dup_search": summary["near_duplicates"]["search"],
            "large_label_method": summary["label_issues"].get("method"),
            "large_near_dup_pairs": summary["near_duplicates"]["pairs"],
            "large_label_flagged": summary["label_issues"].get("flagged")}


def run(quick: bool = False, root: Path | None = None, large: bool = False) -> dict:
    root, what = (root, str(root)) if root else real_photos_or_digits()
    photos = image_files(root)
    r = random.Random(0)
    if quick:
        photos = r.sample(photos, 400)
    figures = {"photos": what, "photo_count": len(photos)}
    with tempfile.TemporaryDirectory() as tmp:
        figures |= bench_duplicates(photos, 60 if quick else 300, Path(tmp), r)
        figures |= bench_quality(photos, 10 if quick else 30, Path(tmp), r)
    # each label benchmark draws its own flips: a part can be rerun alone with the same figures
    figures |= bench_labels(ensure_digits(REPO / "data" / "digits"), "digits", random.Random(1))
    figures |= bench_labels(root, "photos", random.Random(2))
    figures |= bench_speed(root, photos)
    figures |= bench_growth(10_000 if quick else 50_000)
    if large:
        with tempfile.TemporaryDirectory() as tmp:
            figures |= bench_large(photos, Path(tmp), 6_000 if quick else 60_000)
    return figures


def part(name: str, quick: bool, root: Path | None) -> dict:
    """One part alone (a rerun after a change), with the same draws as in `run`."""
    root = root or real_photos_or_digits()[0]
    photos = image_files(root)
    r = random.Random(0)
    if quick:
        photos = r.sample(photos, 400)
    if name == "growth":
        return bench_growth(10_000 if quick else 50_000)
    if name == "labels":
        return (bench_labels(ensure_digits(REPO / "data" / "digits"), "digits", random.Random(1))
                | bench_labels(root, "photos", random.Random(2)))
    with tempfile.TemporaryDirectory() as tmp:
        if name == "duplicates":
            return bench_duplicates(photos, 60 if quick else 300, Path(tmp), r)
        return bench_large(photos, Path(tmp), 6_000 if quick else 60_000)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--root", type=Path, help="default: the real photos in ../shared/data")
    parser.add_argument("--large", action="store_true",
                        help="also time the plain command on 60,000 small images")
    parser.add_argument("--only", choices=("growth", "large", "duplicates", "labels"),
                        help="one part alone")
    args = parser.parse_args()
    if args.only:
        print(json.dumps(part(args.only, args.quick, args.root), indent=1))
    else:
        print(json.dumps(run(args.quick, args.root, args.large), indent=1))
