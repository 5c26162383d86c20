"""Effect tests of the audit's options: the index search and the leave-one-out label check
(and `audit.large_above`, which picks them), the candidate search's `near_dup_candidates` and
`near_dup_min_cosine`, the label check's folds and neighbours, the decoding threads, the EXIF
camera among the correlations and `correlation_margin`."""


import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers.config import compose_config
from helpers.prepare import fingerprint, jpeg_copy, smooth_image
from imgexp.audit import labels as label_checks
from imgexp.audit import pixels
from imgexp.audit.neighbours import candidate_pairs, nearest
from imgexp.audit.pipeline import run_audit
from imgexp.errors import ImgexpError


def run(root, out, *overrides):
    before = fingerprint(root)
    cfg = compose_config("audit", [f"data.root={root}", "audit.cache_dir=null", *overrides],
                         out / "run")
    summary = run_audit(cfg)
    assert fingerprint(root) == before, "the source tree changed"
    return summary, out / "run"


def read(run_dir, name):
    return pd.read_csv(run_dir / f"{name}.csv", keep_default_na=False)


def pair_set(run_dir):
    frame = read(run_dir, "near_duplicates")
    return {frozenset(p) for p in zip(frame.path_a, frame.path_b, strict=True)}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Two classes of 10 distinct pictures; a group of four near copies of cat/0."""
    root = tmp_path_factory.mktemp("options_src")
    for c, name in enumerate(("cat", "dog")):
        (root / name).mkdir()
        for i in range(10):
            smooth_image(100 * c + i, (48, 48)).save(root / name / f"{i}.png")
    original = smooth_image(0, (48, 48))
    for n, (quality, scale) in enumerate(((90, 1.0), (70, 1.3), (50, 0.8))):
        jpeg_copy(original, scale, quality).save(root / "cat" / f"copy{n}.jpg")
    return root


def planted(n=2000, copies=100, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n // 50, 256))
    v = centres[rng.integers(0, len(centres), n)] + rng.normal(size=(n, 256))
    src = rng.choice(n - copies, copies, replace=False)
    v[n - copies:] = v[src] + 0.3 * rng.normal(size=(copies, 256))
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    return v, {(int(s), n - copies + i) for i, s in enumerate(src)}


def test_the_index_search_finds_the_same_pairs_as_the_exact_one():
    v, truth = planted()
    exact = set(map(tuple, candidate_pairs(v, 5, 0.8, "exact").tolist()))
    index = set(map(tuple, candidate_pairs(v, 5, 0.8, "index").tolist()))
    assert truth <= exact and index == exact
    # the index only proposes: the distances of what it finds are the exact ones
    ie, de = nearest(v, 3, "exact")
    ii, di = nearest(v, 3, "index")
    same = ie[:, 0] == ii[:, 0]
    assert same[-100:].all()  # every planted copy's nearest row
    np.testing.assert_allclose(di[same, 0], de[same, 0], atol=1e-5)  # float32 rounding


def test_large_above_switches_to_the_index_search_and_check_with_the_same_pairs(source,
                                                                                 tmp_path):
    small, small_dir = run(source, tmp_path / "a")
    large, large_dir = run(source, tmp_path / "b", "audit.large_above=5")
    assert (small["near_duplicates"]["search"], small["label_issues"]["method"]) == (
        "exact", "kfold")
    assert (large["near_duplicates"]["search"], large["label_issues"]["method"]) == (
        "index", "index")
    assert "leave-one-out" in large["label_issues"]["check"]
    assert pair_set(large_dir) == pair_set(small_dir) and len(pair_set(small_dir)) == 6


def test_an_unknown_search_is_a_clear_error(source, tmp_path):
    with pytest.raises(ImgexpError, match="audit.near_dup_search=fast is not one of"):
        run(source, tmp_path, "audit.near_dup_search=fast")


def test_fewer_candidates_or_a_higher_min_cosine_check_fewer_pairs(source, tmp_path):
    one, one_dir = run(source, tmp_path / "a", "audit.near_dup_candidates=1")
    assert 3 <= len(pair_set(one_dir)) < 6  # each copy's nearest only: not all six pairs
    strict, strict_dir = run(source, tmp_path / "b", "audit.near_dup_min_cosine=1.01")
    assert pair_set(strict_dir) == set()


def test_label_folds_neighbours_and_threads_reach_what_they_set(source, tmp_path,
                                                                monkeypatch):
    seen, sizes = [], []
    real_probabilities, real_pool = label_checks.out_of_sample_probabilities, pixels.ThreadPoolExecutor

    def probabilities(features, labels, n_classes, folds, k, seed):
        seen.append((folds, k))
        return real_probabilities(features, labels, n_classes, folds, k, seed)

    def pool(max_workers):
        sizes.append(max_workers)
        return real_pool(max_workers=max_workers)

    monkeypatch.setattr(label_checks, "out_of_sample_probabilities", probabilities)
    monkeypatch.setattr(pixels, "ThreadPoolExecutor", pool)
    run(source, tmp_path, "audit.label_folds=3", "audit.label_neighbours=2", "audit.threads=3")
    assert seen == [(3, 2)] and sizes == [3]


def test_folds_and_neighbours_change_the_probabilities():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 4)), np.repeat([0, 1], 30)
    one = label_checks.out_of_sample_probabilities(x, y, 2, folds=5, k=1, seed=0)
    ten = label_checks.out_of_sample_probabilities(x, y, 2, folds=5, k=10, seed=0)
    assert set(np.unique(one)) <= {0.0, 1.0} and not set(np.unique(ten)) <= {0.0, 1.0}
    two = label_checks.out_of_sample_probabilities(x, y, 2, folds=2, k=10, seed=0)
    assert not np.allclose(two, ten)


def camera_jpeg(seed, make, model, path):
    exif = Image.Exif()
    if make:
        exif[pixels.MAKE], exif[pixels.MODEL] = make, model
    smooth_image(seed, (48, 48)).save(path, "JPEG", quality=90, exif=exif)


@pytest.fixture(scope="module")
def cameras(tmp_path_factory):
    """Class a shot with one camera, class b with another; same size, format, content kind."""
    root = tmp_path_factory.mktemp("cameras")
    for c, (name, make, model) in enumerate((("a", "Canon", "EOS 5D"), ("b", "Nikon", "D50"))):
        (root / name).mkdir()
        for i in range(12):
            camera_jpeg(500 + 50 * c + i, make, model, root / name / f"{i}.jpg")
    return root


def shortcut(run_dir, name):
    frame = read(run_dir, "correlations").set_index("property")
    return frame.loc[name]


def test_the_exif_camera_that_gives_the_label_away_is_a_shortcut(cameras, tmp_path):
    _, run_dir = run(cameras, tmp_path)
    row = shortcut(run_dir, "exif_camera")
    assert bool(row.shortcut) and row.balanced_accuracy == 1.0
    # the page counts the shortcuts, not the properties tested (it said 7 with none found)
    tested = len(read(run_dir, "correlations"))
    assert f"1 (exif_camera) of {tested} tested" in (run_dir / "report.html").read_text()
    assert not shortcut(run_dir, "file_format").shortcut  # both JPEG
    _, strict_dir = run(cameras, tmp_path / "strict", "audit.correlation_margin=0.6")
    assert not shortcut(strict_dir, "exif_camera").shortcut  # 0.5 + 0.6: out of reach


def test_without_exif_the_camera_predicts_nothing(tmp_path):
    for c, name in enumerate(("a", "b")):
        (tmp_path / "src" / name).mkdir(parents=True)
        for i in range(12):
            camera_jpeg(700 + 50 * c + i, "", "", tmp_path / "src" / name / f"{i}.jpg")
    _, run_dir = run(tmp_path / "src", tmp_path)
    assert not shortcut(run_dir, "exif_camera").shortcut


def test_a_class_of_one_image_is_left_out_of_the_label_checks(tmp_path):
    """Out of fold, a class's only image never has a neighbour of its class: it would be
    flagged whatever it shows (it was, with score 1.0)."""
    root = tmp_path / "src"
    for c, name in enumerate(("a", "b", "c")):
        (root / name).mkdir(parents=True)
        for i in range(1 if name == "a" else 12):
            smooth_image(100 * c + i, (32, 32)).save(root / name / f"{i}.png")
    summary, run_dir = run(root, tmp_path)
    assert not any(p.startswith("a/") for p in read(run_dir, "label_issues").path)
    assert "['a']" in summary["label_issues"]["note"] and summary["label_issues"]["check"]


def test_a_class_whose_only_file_is_unreadable_is_listed_not_fatal(source, tmp_path):
    root = tmp_path / "src"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            (root / name / f"{i}.png").write_bytes((source / name / f"{i}.png").read_bytes())
    (root / "z").mkdir()
    (root / "z" / "x.jpg").write_text("<html>not an image</html>")
    summary, run_dir = run(root, tmp_path)
    assert summary["unreadable"] == 1 and summary["audited"] == 12
    assert list(read(run_dir, "unreadable").path) == ["z/x.jpg"]


@pytest.mark.parametrize("override", ["audit.label_neighbours=0", "audit.label_folds=1",
                                      "audit.large_above=-1"])
def test_out_of_range_numbers_are_refused_before_any_work(source, tmp_path, override):
    with pytest.raises(ImgexpError, match=override.split("=")[0]):
        run(source, tmp_path, override)
