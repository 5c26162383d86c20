"""imgexp-select end to end on the built-in digits, a trained digits model as the extractor."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers.config import compose_config
from imgexp.data import read_manifest
from imgexp.errors import ImgexpError
from imgexp.select.pipeline import run_select
from imgexp.select.selection import cluster_shares


def tree_state(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


def overrides(data_dir, ckpt, cache):
    return ["data=digits", f"paths.data_dir={data_dir}", f"select.ckpt_path={ckpt}",
            f"select.cache_dir={cache}", "select.n_experiments=30"]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, data_dir, digits_root, digits_ckpt):
    """One real command line: ~30% of the digits (540 of 1,797) in 20 clusters."""
    base = tmp_path_factory.mktemp("select")
    before = tree_state(digits_root)
    proc = subprocess.run(
        [sys.executable, "-m", "imgexp.select", *overrides(data_dir, digits_ckpt, base / "cache"),
         "select.budget=540", f"hydra.run.dir={base / 'run'}"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"dir": base / "run", "cache": base / "cache", "stdout": proc.stdout,
            "source_unchanged": tree_state(digits_root) == before}


def test_selection_of_30_percent_keeps_every_class_and_is_more_diverse(cli_run):
    summary = json.loads((cli_run["dir"] / "summary.json").read_text())
    assert summary["n_images"] == 1797 and summary["n_selected"] == 540
    assert sorted(summary["labels_selected"]) == [str(d) for d in range(10)]
    assert min(summary["labels_selected"].values()) >= 20
    sim_all, sim_sel = summary["similarity_all"], summary["similarity_selected"]
    assert sim_all["n_experiments"] == sim_sel["n_experiments"] == 30
    # centred on the collection's mean, ten balanced classes score ~0 by construction, and
    # the selection, which keeps the classes, stays within noise of it
    assert abs(sim_all["mean"]) < 0.01 and abs(sim_sel["mean"]) < 0.05
    red_all, red_sel = summary["redundancy_all"], summary["redundancy_selected"]
    assert red_all["sample_size"] == red_sel["sample_size"] == 500
    # closest look-alikes are further away (by 0.019-0.03 on the session's checkpoint, which
    # changes with the training recipe's random draws: the margin is the effect, not a figure)
    assert red_sel["mean"] < red_all["mean"] - 0.01
    assert summary["features"]["computed"] == 1797 and summary["features"]["dim"] == 128
    assert summary["clustering"]["n_clusters"] == 20 and summary["clustering"]["method"] == "kmeans"
    assert "selected: 540" in cli_run["stdout"] and "data.manifest=" in cli_run["stdout"]
    assert cli_run["source_unchanged"]


def test_per_cluster_shares_shrink_with_cluster_size(cli_run):
    clusters = json.loads((cli_run["dir"] / "summary.json").read_text())["clusters"]
    assert sum(c["size"] for c in clusters) == 1797 and sum(c["selected"] for c in clusters) == 540
    ordered = sorted(clusters, key=lambda c: c["size"])
    shares = [c["share"] for c in ordered]
    # budget mode: the same curve, rounded to whole images (one image of slack per cluster)
    assert all(b <= a + 1 / o["size"] + 1e-9
               for a, b, o in zip(shares, shares[1:], ordered[1:], strict=False))
    assert shares[0] > shares[-1]
    assert all(c["spread"] > 0 for c in clusters)
    # relative to the median cluster: clusters within 10% in size get close shares (the curve
    # scaled by the budget moves them by at most ~4 points, rounding by one image each)
    median = np.median([c["size"] for c in clusters])
    assert all(c["relative_size"] == pytest.approx(c["size"] / median, abs=1e-4)
               for c in clusters)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if b["size"] <= 1.1 * a["size"]:
            assert abs(a["share"] - b["share"]) <= 0.04 + 1 / a["size"] + 1 / b["size"]


def test_csv_files_manifest_and_pictures(cli_run):
    run = cli_run["dir"]
    table = pd.read_csv(run / "clusters.csv", dtype={"label": str})
    assert list(table.columns) == ["path", "label", "split", "cluster", "distance"]
    assert len(table) == 1797 and table["cluster"].between(0, 19).all()
    selection = pd.read_csv(run / "selection.csv", dtype={"label": str})
    assert len(selection) == 540 and set(selection["path"]) <= set(table["path"])
    root, classes, samples = read_manifest(run / "selection_manifest.csv")
    assert classes == [str(d) for d in range(10)] and len(samples) == 540
    assert (root / samples[0].path).is_file()
    pictures = run / "pictures"
    assert (pictures / "cluster_sizes.png").stat().st_size > 5000
    assert (pictures / "feature_map.png").stat().st_size > 5000
    assert (pictures / "share_curve.png").stat().st_size > 5000
    mosaics = sorted((pictures / "clusters").glob("cluster_*.jpg"))
    assert len(mosaics) == 20 and Image.open(mosaics[0]).width == 8 * 66
    # selected and left-out thumbnails on rows of their own, under a caption and two headings
    height = Image.open(mosaics[0]).height - 3 * 18
    assert height % 66 == 0 and height // 66 >= 2
    info = json.loads((run / "run_info.json").read_text())
    assert info["seed"] == 42 and len(info["manifest_hash"]) == 64


def test_rerun_from_train_split_uses_the_cache_and_keeps_val_test(cli_run, data_dir, digits_ckpt,
                                                                  tmp_path):
    cfg = compose_config("select", [*overrides(data_dir, digits_ckpt, cli_run["cache"]),
                                    "select.from_splits=[train]", "select.within=centroid",
                                    "select.pictures=false"], tmp_path)
    summary = run_select(cfg)
    assert summary["features"]["computed"] == 0
    n_train = summary["n_images"]
    assert summary["features"]["cached"] == n_train and 1250 < n_train < 1270  # 70% of 1,797
    _, _, samples = read_manifest(tmp_path / "selection_manifest.csv")
    splits = pd.Series([s.split for s in samples]).value_counts()
    assert splits["train"] == summary["n_selected"]
    assert splits["val"] + splits["test"] == 1797 - n_train
    sizes = np.array([c["size"] for c in summary["clusters"]])
    shares = np.array([c["share"] for c in summary["clusters"]])
    # no budget: each share is the curve p(n) rounded to whole images (half an image either
    # way, at least min_per_cluster) and written with 4 decimals; so shares fall with size
    # only up to that rounding (0.4186 at n=43 may follow 0.4222 at n=45)
    s = cfg.select
    curve = np.clip(cluster_shares(sizes, s.p_min, s.p_max, s.growth), s.min_per_cluster / sizes, 1)
    slack = 0.5 / sizes + 5e-5
    assert np.all(np.abs(shares - curve) <= slack)
    order = np.argsort(sizes)
    assert np.all(np.diff(shares[order]) <= slack[order][1:] + slack[order][:-1])
    assert not (tmp_path / "pictures").exists()


def test_unlabelled_flat_folder_and_export(digits_root, digits_ckpt, tmp_path):
    flat = tmp_path / "incoming"
    flat.mkdir()
    for i, path in enumerate(sorted(digits_root.rglob("*.png"))[::40]):
        (flat / f"img_{i:03d}.png").write_bytes(path.read_bytes())
    (flat / "broken.jpg").write_bytes(b"not a jpeg")
    cfg = compose_config("select", [
        f"data.root={flat}", f"select.ckpt_path={digits_ckpt}", f"select.cache_dir={tmp_path}/c",
        "select.n_clusters=4", "select.export=copy", f"select.export_dir={tmp_path}/out",
        "select.pictures=false", "select.n_experiments=5"], tmp_path / "run")
    summary = run_select(cfg)
    assert summary["n_images"] == 45 and summary["manifest"] is None
    assert summary["unreadable"] == [str(flat / "broken.jpg")]
    assert summary["labels_all"] == {} and summary["export"]["exported"] == summary["n_selected"]
    assert len(list((tmp_path / "out").glob("*.png"))) == summary["n_selected"]


def test_bad_option_is_a_clear_error(data_dir, digits_ckpt, tmp_path):
    cfg = compose_config("select", [*overrides(data_dir, digits_ckpt, tmp_path / "c"),
                                    "select.precision=fp16"], tmp_path)
    with pytest.raises(ImgexpError, match="select.precision='fp16' is not an option"):
        run_select(cfg)


def test_large_preset_and_defaults_compose(tmp_path):
    cfg = compose_config("select", ["data.root=/images", "select=large"], tmp_path)
    assert (cfg.select.method, cfg.select.pca_dim, cfg.select.n_clusters) == ("minibatch", 128, 50)
    assert cfg.select.within == "kcenter" and cfg.task_name == "select"  # linear at scale
    assert compose_config("select", ["data.root=/images"], tmp_path).select.within == "typical"
    assert cfg.model.backbone.name == "resnet50" and cfg.select.cache_dir.endswith("cache/features")


def test_a_mistyped_within_is_refused_before_any_feature_is_computed(tmp_path, monkeypatch):
    # it was checked at the selection step, after the whole extraction
    import imgexp.select.pipeline as pipeline

    monkeypatch.setattr(pipeline, "list_images", lambda data: pytest.fail("images listed"))
    cfg = compose_config("select", ["data.root=/images", "select.within=bogus"], tmp_path)
    with pytest.raises(ImgexpError, match="select.within='bogus' is not an option"):
        run_select(cfg)


def test_an_empty_folder_is_no_images_not_a_request_for_class_folders(tmp_path):
    # select reads a flat folder too: "has no class folders" sent the user the wrong way
    (tmp_path / "empty").mkdir()
    cfg = compose_config("select", [f"data.root={tmp_path / 'empty'}"], tmp_path / "run")
    with pytest.raises(ImgexpError, match="no images under data.root=") as err:
        run_select(cfg)
    assert "class folders" not in str(err.value)
