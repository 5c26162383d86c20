"""The share curve (relative to the median cluster, issue 18) and the pictures that explain a
selection, on constructed clusters: what the drawing functions put in the figure."""

import numpy as np
import pytest
from PIL import Image

from imgexp.select.pictures import (
    FRAME,
    cluster_mosaics,
    cluster_sizes_figure,
    feature_map_figure,
    mosaic_members,
)
from imgexp.select.selection import budget_scale, cluster_shares, solve_budget
from imgexp.select.share_plot import share_curve_figure

DEFAULT = dict(p_min=0.1, p_max=0.6, growth=2.0)  # conf/select/default.yaml


def collections(n=200, seed=0):
    """Cluster sizes as k-means gives them: 5 to 40 clusters, sizes spread over two decades."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        k = int(rng.integers(5, 41))
        yield np.maximum(1, np.round(np.exp(rng.normal(np.log(200), 0.9, k)))).astype(int)


def test_share_follows_the_size_relative_to_the_median_cluster():
    sizes = np.array([10, 40, 100, 400, 1000])  # median 100: r = 0.1, 0.4, 1, 4, 10
    r = sizes / 100
    assert cluster_shares(sizes, **DEFAULT) == pytest.approx(0.1 + 0.5 * np.exp(-2 * r))
    # the real run: clusters of 195 and 217 images got 60% and 17% from the former
    # range-normalised curve; relative to the median they are neighbours
    shares = cluster_shares([195, 217, 180, 300, 420, 90, 260], **DEFAULT)
    assert abs(shares[0] - shares[1]) < 0.02


@pytest.mark.parametrize("k", [2, 7, 100])
def test_multiplying_every_size_by_k_changes_no_share(k):
    for sizes in collections(50):
        assert cluster_shares(k * sizes, **DEFAULT) == pytest.approx(
            cluster_shares(sizes, **DEFAULT), abs=1e-12)


def test_clusters_within_10_percent_in_size_get_shares_within_2_points():
    # |p'(r)| * 0.1 r <= (p_max - p_min) * 0.1 / e = 0.018 at the defaults
    pairs = 0
    for sizes in collections():
        shares = cluster_shares(sizes, **DEFAULT)
        close = np.abs(sizes[:, None] - sizes[None]) <= 0.1 * np.minimum(sizes[:, None],
                                                                          sizes[None])
        pairs += close.sum()
        assert np.abs(shares[:, None] - shares[None])[close].max() <= 0.02
    assert pairs > 5000  # the property was tried on many close pairs


def test_share_never_increases_with_size():
    for sizes in collections():
        order = np.argsort(sizes, kind="stable")
        assert np.all(np.diff(cluster_shares(sizes, **DEFAULT)[order]) <= 1e-15)


def test_p_max_for_much_smaller_clusters_p_min_for_much_larger_and_growth_sets_the_decay():
    sizes = np.array([1, 1000, 1000, 1000, 20_000])
    shares = cluster_shares(sizes, p_min=0.05, p_max=0.7, growth=2.0)
    assert shares[0] == pytest.approx(0.7, abs=2e-3) and shares[-1] == pytest.approx(0.05)
    assert shares[1] == pytest.approx(0.05 + 0.65 * np.exp(-2))  # the median cluster, r = 1
    steeper = cluster_shares(sizes, p_min=0.05, p_max=0.7, growth=4.0)
    assert steeper[1] == pytest.approx(0.05 + 0.65 * np.exp(-4))
    assert cluster_shares(sizes, p_min=0.05, p_max=0.7, growth=0.0) == pytest.approx(0.7)


def test_budget_is_met_with_the_same_curve_scaled():
    for sizes in collections(30, seed=1):
        budget = int(0.2 * sizes.sum())
        counts = solve_budget(sizes, budget, **DEFAULT)
        assert counts.sum() == budget and np.all(counts >= 1) and np.all(counts <= sizes)
        scale = budget_scale(sizes, budget, **DEFAULT)
        wanted = np.minimum(1, scale * cluster_shares(sizes, **DEFAULT)) * sizes
        # rounding, the left-over images and min_per_cluster: at most one image off
        assert np.all(np.abs(counts - np.maximum(1, wanted)) <= 1 + 1e-9)


def test_feature_map_has_a_legend_of_clusters_and_of_selected_vs_not():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), [50, 30, 20])
    selected = np.zeros(100, dtype=bool)
    selected[[0, 1, 2, 60, 61, 90]] = True
    keep = np.arange(0, 100, 2)  # a sample drawn: counts still about every image
    fig = feature_map_figure(rng.normal(size=(len(keep), 2)), labels, selected, "PCA", keep)
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts == ["cluster 0 (50)", "cluster 1 (30)", "cluster 2 (20)", "selected (6)",
                     "not selected (94)"]
    ax = fig.axes[0]
    assert ax.get_title().startswith("100 images (50 drawn), 6 selected, 3 clusters")
    drawn_selected = ax.collections[1].get_offsets()
    assert len(drawn_selected) == selected[keep].sum() == 4


def test_cluster_sizes_stack_the_selected_count_on_the_size():
    sizes, counts = np.array([40, 200, 90]), np.array([20, 30, 25])
    ax = cluster_sizes_figure(sizes, counts).axes[0]
    taken, rest = ax.containers
    heights = lambda bars: [b.get_height() for b in bars]  # noqa: E731
    assert heights(taken) == [30, 25, 20]  # largest cluster first
    assert [b.get_y() for b in rest] == [30, 25, 20]  # stacked on the selected count
    assert np.add(heights(taken), heights(rest)).tolist() == [200, 90, 40]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["selected (75)",
                                                                    "not selected (255)"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "0"]
    assert "30/200\n15%" in [t.get_text() for t in ax.texts]


def test_share_curve_picture_puts_each_cluster_at_its_relative_size_and_share():
    sizes, counts = np.array([50, 100, 400]), np.array([20, 17, 40])
    ax = share_curve_figure(**DEFAULT, sizes=sizes, counts=counts, scale=1.5).axes[0]
    points = ax.collections[0].get_offsets()
    assert np.asarray(points) == pytest.approx(np.c_[[0.5, 1, 4], [0.4, 0.17, 0.1]])
    curve, scaled = ax.lines[:2]
    r = curve.get_xdata()
    assert curve.get_ydata() == pytest.approx(0.1 + 0.5 * np.exp(-2 * r))
    assert scaled.get_ydata() == pytest.approx(np.minimum(1, 1.5 * curve.get_ydata()))
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[0].startswith("p(r) = 0.1 + (0.6 − 0.1)·exp(−2·r)")
    assert "scaled ×1.50" in texts[1] and "the 3 clusters" in texts[2]
    assert "median cluster: 100 images" in ax.get_title()


def test_mosaic_shows_half_selected_in_pick_order_half_left_out_from_typical_to_not():
    members = np.arange(100)
    selected = np.zeros(100, dtype=bool)
    selected[:30] = True
    ranks = np.where(selected, 29 - members, -1)  # picked last-to-first
    distances = members.astype(float)[::-1].copy()  # member 99 is the most typical
    taken, left = mosaic_members(members, selected, ranks, distances, 48)
    assert taken.tolist() == list(range(29, 5, -1))  # 24, in pick order
    assert len(left) == 24 and left[0] == 99 and left[-1] == 30  # typical to atypical
    assert len(set(left.tolist())) == 24
    # few left out: the selected images take their slots; and the other way round
    few_left = selected.copy()
    few_left[:95] = True
    taken, left = mosaic_members(members, few_left, np.where(few_left, members, -1),
                                 distances, 48)
    assert len(taken) == 43 and left.tolist() == [99, 98, 97, 96, 95]
    taken, left = mosaic_members(members, np.arange(100) < 3, members, distances, 48)
    assert len(taken) == 3 and len(left) == 45


def test_cluster_mosaics_frame_the_selected_and_show_the_left_out(tmp_path):
    paths = []
    for i in range(40):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (32, 32), (30, 90, 200)).save(paths[-1])
    labels = np.repeat([0, 1], [30, 10])
    selected = np.zeros(40, dtype=bool)
    selected[[0, 5, 7, 30]] = True
    ranks = np.full(40, -1)
    ranks[selected] = [0, 1, 2, 0]
    written = cluster_mosaics(paths, labels, selected, ranks, np.zeros(40), tmp_path / "m", 12)
    assert [p.name for p in written] == ["cluster_000.jpg", "cluster_001.jpg"]
    sheet = np.asarray(Image.open(written[0]).convert("RGB")).astype(int)
    cell, line = 66, 18
    # caption, heading, one row of the 3 selected, heading, two rows of 9 of the 27 left out
    assert sheet.shape[:2] == (line + line + cell + line + 2 * cell, 8 * cell)
    assert (sheet[:line] < 100).all(axis=2).any()  # caption text drawn

    def framed(y, col):  # the thumbnail's frame colour, JPEG-rounded
        return np.abs(sheet[y + 3, col * cell + 3] - FRAME).max() < 40

    top, bottom = 2 * line + 1, 3 * line + cell + 1
    assert [framed(top, c) for c in range(8)] == [True] * 3 + [False] * 5
    assert [framed(bottom, c) or (sheet[bottom + 3, c * cell + 3] > 240).all()
            for c in range(8)] == [False] * 8  # thumbnails there, none framed
    assert (sheet[bottom + 30, 1:8 * cell:cell][:, 2] > 150).all()  # blue images drawn
