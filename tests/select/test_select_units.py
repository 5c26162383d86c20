"""Selection rule, budget, k-center, similarity score, clustering and export on constructed data."""

import hashlib
import os

import numpy as np
import pytest

from imgexp.errors import ImgexpError
from imgexp.select.clustering import cluster_features, run_kmeans
from imgexp.select.export import export_selection
from imgexp.select.pictures import plot_k_choice
from imgexp.select.selection import (
    blocked_kcenter,
    cluster_counts,
    cluster_shares,
    kcenter,
    select,
    solve_budget,
)
from imgexp.select.similarity import redundancy_score, similarity_score


def blobs(sizes, dim=16, spread=0.3, seed=0):
    """Well separated Gaussian clusters of the given sizes (centres 10 apart)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim))
    centres *= 10 / np.linalg.norm(centres, axis=1, keepdims=True)
    x = np.concatenate([c + spread * rng.normal(size=(n, dim)) for c, n in zip(centres, sizes, strict=True)])
    y = np.repeat(np.arange(len(sizes)), sizes)
    return x.astype(np.float32), y


def test_share_follows_the_seed_curve_and_is_non_increasing_in_size():
    sizes = np.array([10, 40, 100, 400, 1000])  # median 100
    shares = cluster_shares(sizes, p_min=0.1, p_max=0.6, growth=2.0)
    p = lambda n: 0.1 + 0.5 * np.exp(-2.0 * n / 100)  # noqa: E731
    assert shares == pytest.approx(p(sizes)) and np.all(np.diff(shares) < 0)
    counts = cluster_counts(sizes, shares, min_per_cluster=8)
    # p(10) * 10 = 5 is lifted to min_per_cluster
    assert counts.tolist() == [8] + [round(p(n) * n) for n in (40, 100, 400, 1000)]
    # equal sizes: every cluster is the median one
    assert cluster_shares([50, 50, 50], 0.1, 0.6, 2.0) == pytest.approx(p(100))
    with pytest.raises(ImgexpError, match="p_min"):
        cluster_shares(sizes, 0.7, 0.6, 2.0)


def test_constructed_clusters_get_a_non_increasing_share():
    sizes = [30, 90, 240, 600]
    x, y = blobs(sizes)
    clusters = cluster_features(x, n_clusters=4, seed=0)
    found = np.bincount(clusters.labels)
    assert sorted(found.tolist()) == sorted(sizes)  # k-means recovers the constructed groups
    counts = cluster_counts(found, cluster_shares(found, 0.05, 0.5, 3.0), 1)
    by_size = np.argsort(found)
    share = counts[by_size] / found[by_size]
    assert np.all(np.diff(share) <= 1e-9)
    p = lambda n: 0.05 + 0.45 * np.exp(-3.0 * n / 165)  # noqa: E731  (median of 90 and 240)
    assert counts[by_size].tolist() == [round(p(n) * n) for n in sizes]


@pytest.mark.parametrize("budget", [4, 50, 123, 500, 960])
def test_budget_is_met_exactly_with_the_same_curve(budget):
    sizes = np.array([30, 90, 240, 600])
    counts = solve_budget(sizes, budget, 0.05, 0.5, 3.0, min_per_cluster=1)
    assert counts.sum() == budget and np.all(counts >= 1) and np.all(counts <= sizes)
    share = counts / sizes
    if budget < 500:  # below saturation, smaller clusters keep a larger share
        assert np.all(np.diff(share) <= 0.02)


def test_budget_out_of_reach_says_so():
    with pytest.raises(ImgexpError, match="select.budget=2 is out of reach"):
        solve_budget([30, 90, 240], 2, 0.1, 0.5, 1.0, min_per_cluster=1)
    with pytest.raises(ImgexpError, match="every image"):
        solve_budget([30, 90], 121, 0.1, 0.5, 1.0)


def test_kcenter_covers_the_cluster_better_than_random_or_centroid_picks():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(400, 2)).astype(np.float32)
    d = np.linalg.norm(x - x.mean(0), axis=1)
    labels = np.zeros(len(x), dtype=int)

    def coverage(method):  # largest distance from any point to its nearest pick
        chosen, ranks = select(x, labels, d, np.array([20]), within=method, seed=0)
        assert len(chosen) == 20 and sorted(ranks.tolist()) == list(range(20))
        return np.linalg.norm(x[:, None] - x[chosen][None], axis=2).min(1).max()

    assert coverage("kcenter") < 0.8 * coverage("random") < coverage("centroid")
    # on a line, farthest-point starts at the middle, then takes both ends
    line = np.linspace(0, 1, 11, dtype=np.float32)[:, None]
    assert sorted(kcenter(line, 3, 5).tolist()) == [0, 5, 10]


def test_typical_picks_one_central_image_per_look_alike_group_and_no_outlier():
    # three tight groups of different sizes plus a few stray images: k-center picks strays;
    # typical takes the middle of each group, the biggest group first
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [5, 0], [0, 5]], dtype=np.float32)
    groups = [c + 0.1 * rng.standard_normal((n, 2)) for c, n in zip(centres, (60, 40, 20), strict=True)]
    outliers = np.array([[2.5, 2.5], [-2, -2], [6, 6]], dtype=np.float32)
    x = np.concatenate([*groups, outliers]).astype(np.float32)
    d = np.linalg.norm(x - x.mean(0), axis=1)
    labels = np.zeros(len(x), dtype=int)
    picks, ranks = select(x, labels, d, np.array([3]), within="typical", seed=0)
    assert picks.max() < 120  # no outlier
    by_rank = x[picks[np.argsort(ranks)]]
    assert np.linalg.norm(by_rank - centres, axis=1).max() < 0.3  # each group's middle
    kc, _ = select(x, labels, d, np.array([3]), within="kcenter", seed=0)
    assert kc.max() >= 120  # what typical avoids


def test_blocked_kcenter_covers_a_big_cluster_almost_as_well_as_the_exact_traversal():
    rng = np.random.default_rng(0)
    # a dense core and a heavy tail of outliers: the tail is what k-center must reach
    x = (rng.standard_normal((3000, 4)) * rng.gamma(1.0, 1.0, (3000, 1))).astype(np.float32)
    d = np.linalg.norm(x - x.mean(0), axis=1)

    def radius(picks):
        return np.linalg.norm(x[:, None] - x[picks][None], axis=2).min(1).max()

    exact = blocked_kcenter(x, d, 150, block=None, seed=0)
    blocked = blocked_kcenter(x, d, 150, block=500, seed=0)
    assert len(set(blocked.tolist())) == 150
    assert radius(blocked) < 1.2 * radius(exact)
    # still farthest-first: the late picks fill small gaps, the early ones the big ones
    gaps = [radius(blocked[:m]) for m in (20, 75, 150)]
    assert gaps[0] > gaps[1] > gaps[2]
    # a block-free run over the same points is the plain traversal
    assert exact.tolist() == kcenter(x, 150, int(np.argmin(d))).tolist()


def test_similarity_score_is_zero_for_unrelated_and_lower_for_a_diverse_subset():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(3000, 32))
    score = similarity_score(noise, n_experiments=20, seed=0)
    assert abs(score["mean"]) < 0.02 and score["n_experiments"] == 20 and score["std"] > 0
    # 300 varied images and 700 near-duplicates of one image
    background = rng.normal(size=(300, 32))
    duplicates = 3 * np.eye(32)[0] + 0.05 * rng.normal(size=(700, 32))
    x = np.r_[background, duplicates].astype(np.float32)
    whole = similarity_score(x, n_experiments=30, seed=0)
    d = np.linalg.norm(x - x.mean(0), axis=1)
    scores = {}
    for within in ("kcenter", "random", "centroid"):
        chosen, _ = select(x, np.zeros(len(x), dtype=int), d, np.array([100]), within, seed=0)
        scores[within] = similarity_score(x[chosen], x.mean(0), n_experiments=30)["mean"]
    assert scores["kcenter"] < whole["mean"] - 0.1  # the duplicates are dropped
    assert scores["kcenter"] < scores["random"] < scores["centroid"]
    assert scores["centroid"] > 0.8  # the most typical images are the duplicates


def test_redundancy_score_falls_when_near_duplicates_are_dropped():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 16))
    # ten groups; each image has a near-duplicate (two shots of the same scene)
    scenes = centres[rng.integers(0, 10, 300)] + 0.5 * rng.normal(size=(300, 16))
    x = np.r_[scenes, scenes + 0.01 * rng.normal(size=scenes.shape)]
    center = x.mean(0)
    whole = redundancy_score(x, center, sample_size=200, n_experiments=10)
    unique = redundancy_score(x[:300], center, sample_size=200, n_experiments=10)
    assert whole["sample_size"] == unique["sample_size"] == 200
    assert whole["mean"] > unique["mean"] + 0.03 and whole["std"] < 0.01


def test_auto_k_picks_the_constructed_number_of_clusters(tmp_path):
    x, _ = blobs([100, 100, 100, 100], seed=3)
    clusters = cluster_features(x, n_clusters="auto", auto_k=[2, 3, 4, 5, 6, 8], seed=0)
    assert clusters.info["n_clusters"] == 4
    assert [row["k"] for row in clusters.info["k_table"]] == [2, 3, 4, 5, 6, 8]
    assert plot_k_choice(clusters.info["k_table"], tmp_path / "k.png").stat().st_size > 1000


def test_minibatch_above_threshold_and_pca_reduce_dimensions():
    x, _ = blobs([300, 300, 300], dim=64)
    _, _, used = run_kmeans(x, 3, "auto", minibatch_above=500)
    assert used == "minibatch"
    clusters = cluster_features(x, 3, pca_dim=8, seed=0)
    assert clusters.space.shape == (900, 8) and clusters.info["pca_explained_variance"] > 0.9
    assert sorted(np.bincount(clusters.labels).tolist()) == [300, 300, 300]
    assert len(clusters.info["spread"]) == 3 and clusters.info["centroid_distance"]["min"] > 5


def test_faiss_asked_for_but_missing_is_a_clear_error():
    pytest.importorskip("sklearn")
    try:
        import faiss  # noqa: F401
        pytest.skip("faiss is installed here")
    except ImportError:
        pass
    with pytest.raises(ImgexpError, match="faiss is not installed"):
        run_kmeans(np.zeros((10, 2), dtype=np.float32), 2, "faiss")


def tree_state(root):
    return {p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                             p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("mode", ["copy", "hardlink", "symlink"])
def test_export_keeps_class_folders_and_never_touches_the_source(tmp_path, mode):
    src = tmp_path / "src"
    for cls in ("cat", "dog"):
        (src / cls).mkdir(parents=True)
        for i in range(3):
            (src / cls / f"{i}.jpg").write_bytes(os.urandom(100))
    before = tree_state(src)
    picked = ["cat/0.jpg", "dog/2.jpg"]
    out = export_selection(src, picked, mode, str(tmp_path / "out"))
    assert out["exported"] == 2
    got = sorted(p.relative_to(tmp_path / "out").as_posix()
                 for p in (tmp_path / "out").rglob("*.jpg"))
    assert got == picked
    assert (tmp_path / "out/dog/2.jpg").read_bytes() == (src / "dog/2.jpg").read_bytes()
    assert (tmp_path / "out/cat/0.jpg").is_symlink() == (mode == "symlink")
    again = export_selection(src, picked, mode, str(tmp_path / "out"))
    assert again == {"exported": 0, "already_there": 2, "export_dir": out["export_dir"]}
    assert tree_state(src) == before


def test_export_into_the_source_or_over_other_files_is_refused(tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a/1.jpg").write_bytes(b"one")
    with pytest.raises(ImgexpError, match="inside the source folder"):
        export_selection(src, ["a/1.jpg"], "copy", str(src / "picked"))
    (tmp_path / "out/a").mkdir(parents=True)
    (tmp_path / "out/a/1.jpg").write_bytes(b"other")
    with pytest.raises(ImgexpError, match="already exists with other content"):
        export_selection(src, ["a/1.jpg"], "copy", str(tmp_path / "out"))
    with pytest.raises(ImgexpError, match="select.export_dir"):
        export_selection(src, ["a/1.jpg"], "copy", None)


def test_report_shows_a_spread_only_when_the_experiments_differed():
    from imgexp.select.run import spread

    assert spread({"mean": 0.5, "std": 0.0}) == "0.5000"
    assert spread({"mean": 0.5, "std": 0.01}) == "0.5000 ± 0.0100"
