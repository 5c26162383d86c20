"""imgexp-eval and imgexp-predict end to end on the small trained digits model."""

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from helpers.browser import headless_chromium
from helpers.config import compose_config
from helpers.eval import run_stage, write_unseen_images
from imgexp.errors import ImgexpError
from imgexp.predict.pipeline import predict_folder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_copy(digits_run, tmp_path_factory) -> Path:
    """A copy of the trained run: eval appends its metrics to the run's CSV log, and the
    session's run must stay as trained for other tests (also checks a moved run works)."""
    dest = tmp_path_factory.mktemp("moved") / "run"
    shutil.copytree(digits_run, dest)
    return dest


@pytest.fixture(scope="module")
def eval_dir(run_copy, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval")
    run_stage("eval", f"ckpt_path={run_copy / 'checkpoints' / 'best.ckpt'}",
              f"hydra.run.dir={out}")
    return out


def test_eval_accuracy_equals_the_runs_test_accuracy(eval_dir, run_copy):
    trained = json.loads((run_copy / "metrics.json").read_text())
    evaluated = json.loads((eval_dir / "metrics.json").read_text())
    assert evaluated["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-6)
    assert evaluated["test/f1_macro"] == pytest.approx(trained["test/f1_macro"], abs=1e-5)
    # cross-entropy of the softmax = the run's test loss
    assert evaluated["test/log_loss"] == pytest.approx(trained["test/loss"], rel=1e-4)
    for key in ("test/balanced_acc", "test/precision_macro", "test/recall_weighted",
                "test/top3_acc", "test/ece"):
        assert 0.0 <= evaluated[key] <= 1.0
    assert evaluated["test/top3_acc"] >= evaluated["test/acc"]


def test_confusion_rows_sum_to_class_supports(eval_dir, run_copy):
    split = pd.read_csv(run_copy / "data_split.csv", dtype=str)
    supports = split[split["split"] == "test"]["label"].value_counts()
    matrix = pd.read_csv(eval_dir / "confusion_matrix.csv", index_col=0)
    matrix.index = matrix.index.astype(str)
    assert matrix.sum(axis=1).to_dict() == supports.to_dict()
    report = pd.read_csv(eval_dir / "classification_report.csv", index_col=0)
    report.index = report.index.astype(str)
    assert report.loc[supports.index, "support"].astype(int).to_dict() == supports.to_dict()
    predictions = pd.read_csv(eval_dir / "predictions.csv", dtype={"label": str, "predicted": str})
    n_wrong = int((predictions["label"] != predictions["predicted"]).sum())
    pairs = pd.read_csv(eval_dir / "most_confused.csv")
    assert pairs["count"].sum() == n_wrong == int(matrix.values.sum() - matrix.values.trace())
    assert pairs["count"].is_monotonic_decreasing
    assert (eval_dir / "confusion_matrix.png").stat().st_size > 5000


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links, self.error_rows, self._in_errors = [], [], 0, False
        self.error_images, self.anchors = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._in_errors = attrs.get("id") == "errors"
        if tag == "tr" and self._in_errors and "data-pair" in attrs:
            self.error_rows += 1
        if tag == "img":
            self.images.append(attrs["src"])
            if self._in_errors:
                self.error_images.append(attrs["src"])
        if tag == "a" and attrs.get("href", "#") != "#":
            self.anchors.append(attrs["href"])
        if tag in ("link", "script") and (attrs.get("href") or attrs.get("src")):
            self.links.append(attrs.get("href") or attrs.get("src"))


def test_errors_html_has_one_row_per_error_and_every_image_resolves(eval_dir):
    page_path = eval_dir / "errors" / "errors.html"
    page = _Page()
    page.feed(page_path.read_text())
    predictions = pd.read_csv(eval_dir / "predictions.csv", dtype={"label": str, "predicted": str})
    n_wrong = int((predictions["label"] != predictions["predicted"]).sum())
    assert n_wrong > 0 and page.error_rows == n_wrong
    assert len(page.error_images) == n_wrong and page.links == []  # nothing fetched from outside
    for src in page.images:
        assert not src.startswith(("http:", "https:", "/")), src
        assert (page_path.parent / src).is_file(), src


def test_eval_writes_a_reliability_diagram_that_agrees_with_the_ece(eval_dir):
    from imgexp.metrics.calibration import expected_calibration_error

    metrics = json.loads((eval_dir / "metrics.json").read_text())
    bins = pd.read_csv(eval_dir / "reliability.csv")
    assert len(bins) in (15, 16)  # eval.calibration_bins, + the bin of exact ones if used
    assert bins["count"].sum() == metrics["test/n_images"]
    assert expected_calibration_error(bins) == pytest.approx(metrics["test/ece"], abs=1e-6)
    assert (eval_dir / "reliability.png").stat().st_size > 5000
    page_path = eval_dir / "errors" / "errors.html"
    page = _Page()
    page.feed(page_path.read_text())
    assert "../reliability.png" in page.anchors and "../reliability.png" in page.images
    assert (page_path.parent / "../reliability.png").resolve() == \
        (eval_dir / "reliability.png").resolve()
    assert f"ECE {metrics['test/ece']:.4f}" in page_path.read_text()


def test_errors_html_in_headless_chromium_sorts_and_filters(eval_dir):
    driver = headless_chromium()
    try:
        driver.get((eval_dir / "errors" / "errors.html").as_uri())
        rows = "return Array.from(document.querySelectorAll('#errors tbody tr'))"
        visible = rows + ".filter(r => r.style.display !== 'none')"
        n_rows = driver.execute_script(f"{rows}.length")
        # the thumbnails are loading="lazy", so the page's load event does not wait for them:
        # load every referenced file afresh and wait for each to succeed or fail
        broken = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "Promise.all(Array.from(document.images).map(i => new Promise(ok => {"
            "  const probe = new Image(); probe.onload = () => ok(null); probe.onerror = () => ok(i.src);"
            "  probe.src = i.src; }))).then(r => done(r.filter(Boolean)));")
        assert driver.execute_script("return document.images.length") > 0 and broken == []
        # click the most frequent confusion: only that pair's rows stay
        top = pd.read_csv(eval_dir / "most_confused.csv", dtype={"true": str, "predicted": str}).iloc[0]
        driver.find_element("css selector", "#summary a").click()
        shown_pairs = driver.execute_script(f"{visible}.map(r => r.dataset.pair)")
        assert shown_pairs == [f"{top['true']} \u2192 {top['predicted']}"] * int(top["count"])
        driver.execute_script("document.getElementById('pair').value = '';"
                              "document.getElementById('pair').dispatchEvent(new Event('change'))")
        assert driver.execute_script(f"{visible}.length") == n_rows
        # confidence column (index 4): two clicks = descending
        header = driver.find_element("css selector", "#errors th[data-col='4']")
        header.click()
        header.click()
        values = driver.execute_script(f"{rows}.map(r => +r.children[4].dataset.v)")
        assert values == sorted(values, reverse=True) and len(values) == n_rows
    finally:
        driver.quit()


def test_eval_metrics_are_appended_to_the_runs_csv_log(eval_dir, run_copy):
    log = pd.read_csv(run_copy / "csv" / "metrics.csv")
    evaluated = json.loads((eval_dir / "metrics.json").read_text())
    assert log["test/balanced_acc"].dropna().tolist() == pytest.approx(
        [evaluated["test/balanced_acc"]])
    assert log["train/loss_epoch"].notna().sum() == 3  # the training rows are all still there


def predict_config(tmp_path: Path, ckpt: Path, input_dir: Path, output: Path, *overrides):
    return compose_config("predict", [f"ckpt_path={ckpt}", f"input={input_dir}",
                                      f"output={output}", "predict.num_workers=0", *overrides],
                          tmp_path / "run")


def test_predict_reproduces_eval_predictions(eval_dir, run_copy, tmp_path):
    predictions = pd.read_csv(eval_dir / "predictions.csv", dtype={"label": str, "predicted": str})
    inputs = tmp_path / "new"
    for path, label in zip(predictions["path"], predictions["label"], strict=True):
        (inputs / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, inputs / label / Path(path).name)
    out = tmp_path / "sorted"
    cfg = predict_config(tmp_path, run_copy / "checkpoints" / "best.ckpt", inputs, out,
                         "predict.unknown_threshold=null", "predict.batch_size=37")
    summary = predict_folder(cfg)
    got = pd.read_csv(out / "predictions.csv", dtype={"predicted": str})
    got["key"] = got["path"].map(lambda p: Path(p).relative_to(inputs).as_posix())
    expected = predictions.assign(key=predictions["label"] + "/" + predictions["path"].map(
        lambda p: Path(p).name))
    merged = expected.merge(got, on="key", suffixes=("_eval", "_predict"))
    assert len(merged) == len(predictions) == summary["n_predicted"]
    assert (merged["predicted_eval"] == merged["predicted_predict"]).all()
    assert merged["confidence_eval"].to_numpy() == pytest.approx(
        merged["confidence_predict"].to_numpy(), abs=1e-5)
    # the class folders hold exactly the predicted images, as copies
    for name, count in got["predicted"].value_counts().items():
        assert len(list((out / name).iterdir())) == count
    assert not (out / "_unknown").exists() and summary["n_unknown"] == 0
    assert {"top1_class", "top3_score", "destination"} <= set(got.columns)


def test_threshold_helper_then_unseen_images_mostly_go_to_unknown(run_copy, tmp_path):
    ckpt = run_copy / "checkpoints" / "best.ckpt"
    proc = run_stage("predict", f"ckpt_path={ckpt}", "threshold_for_frr=0.05",
                     f"hydra.run.dir={tmp_path / 'thr'}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("predict.unknown_threshold="))
    threshold = float(line.split()[0].split("=")[1])
    assert 0.2 < threshold < 1.0
    # with a budget too, one of the two would be ignored in silence (the budget was)
    both = run_stage("predict", f"ckpt_path={ckpt}", "threshold_for_frr=0.05",
                     "predict.max_error=0.05", f"hydra.run.dir={tmp_path / 'both'}", check=False)
    assert both.returncode == 1 and "keep one" in both.stderr and "Traceback" not in both.stderr

    inputs = tmp_path / "unseen"
    unseen = write_unseen_images(inputs)
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (inputs / "readme.txt").write_text("not an image")
    out = tmp_path / "sorted"
    cfg = predict_config(tmp_path, ckpt, inputs, out, f"predict.unknown_threshold={threshold}",
                         "predict.mode=symlink")
    summary = predict_folder(cfg)
    # max-softmax of a 3-epoch model is a weak detector (see the energy test): most, not all
    assert summary["n_unknown"] > 0.5 * len(unseen)
    assert len(list((out / "_unknown").iterdir())) == summary["n_unknown"]
    assert all(p.is_symlink() for p in (out / "_unknown").iterdir())
    rejected = pd.read_csv(out / "rejected.csv")
    assert sorted(Path(p).name for p in rejected["path"]) == ["broken.png", "readme.txt"]
    assert rejected["reason"].str.len().gt(0).all()
    # a second run into the same output refuses instead of mixing results
    with pytest.raises(ImgexpError, match="already holds predictions.csv"):
        predict_folder(cfg)


def test_energy_score_also_rejects_unseen_images(run_copy, tmp_path):
    from imgexp.predict.pipeline import validation_threshold

    ckpt = run_copy / "checkpoints" / "best.ckpt"
    cfg = predict_config(tmp_path, ckpt, write_unseen_images(tmp_path / "in")[0].parent,
                         tmp_path / "out", "predict.ood=energy", "threshold_for_frr=0.05")
    found = validation_threshold(cfg)
    threshold = found["threshold"]
    assert found["rejected"] <= 0.05 and found["n_images"] > 100 and found["ood"] == "energy"
    cfg.predict.unknown_threshold = threshold
    summary = predict_folder(cfg)
    assert summary["n_unknown"] >= 0.8 * summary["n_predicted"]
    table = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert (table["unknown"] == (table["score_energy"] < threshold)).all()
