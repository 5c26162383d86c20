"""imgexp-compare on runs that do not share their hyperparameter columns (a sweep + a baseline,
two single runs, numbers mixed with words), and log axes for log-scale parameters.

The run directories are fabricated (the files compare reads), so no training is needed."""

import json
import math

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution

from helpers.config import compose_config
from hydra_plugins.imgexp_optuna_sweeper._results import write_results
from imgexp.compare.pipeline import compare_runs
from imgexp.compare.plots import UNSET, parallel_coordinates_figure

LR_SPACE = "tag(log, interval(1e-5, 3e-2))"


def fake_run(run_dir, overrides, metrics, sweeper_params=None):
    """A finished run as imgexp-train leaves it, reduced to what compare reads."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("seed: 12345\n")
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if sweeper_params is not None:
        hydra = {"hydra": {"sweeper": {"params": sweeper_params},
                           "run": {"dir": "${paths.log_dir}"}}}  # unresolvable: never resolved
        (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "csv").mkdir()
    pd.DataFrame({"epoch": [0, 1], "val/acc": [metrics["val/acc_best"] / 2,
                                               metrics["val/acc_best"]]}).to_csv(
        run_dir / "csv" / "metrics.csv", index=False)
    return run_dir


def compare(tmp_path, *dirs):
    out = tmp_path / "compare"
    cfg = compose_config("compare", [f"dirs=[{','.join(map(str, dirs))}]",
                                     "metrics=[val/acc_best,test/acc]"], out)
    written = {p.name for p in compare_runs(cfg, out)}
    assert {"leaderboard.csv", "leaderboard.md", "curves.png",
            "parallel_coordinates.html"} <= written
    board = pd.read_csv(out / "leaderboard.csv", dtype=str, keep_default_na=False)
    return out, board.set_index("run")


def html_dimensions(out_dir):
    """The dimensions plotly wrote into parallel_coordinates.html (its figure JSON)."""
    text = (out_dir / "parallel_coordinates.html").read_text()
    start = text.index('"dimensions":')
    dims, _ = json.JSONDecoder().raw_decode(text, start + len('"dimensions":'))
    return {d["label"]: d for d in dims}


@pytest.fixture
def sweep_dir(tmp_path):
    """Three trials of an hparams_search whose lr is searched on a log scale."""
    sweep = tmp_path / "sweeps" / "digits_optuna"
    space = {"optimizer.lr": LR_SPACE, "model.backbone.activation": "choice(relu, tanh)"}
    for n, (lr, act, acc) in enumerate([(1e-4, "relu", 0.5), (1e-3, "tanh", 0.7),
                                        (1e-2, "relu", 0.9)]):
        fake_run(sweep / str(n), [f"optimizer.lr={lr}", f"model.backbone.activation={act}",
                                  "trainer.max_epochs=2",
                                  f"++optuna_trial={{storage:x,study_name:s,number:{n}}}"],
                 {"val/acc_best": acc, "test/acc": acc - 0.1, "epochs": 2}, space)
    return sweep


def test_a_sweep_and_a_baseline_run_with_other_columns(tmp_path, sweep_dir):
    baseline = fake_run(tmp_path / "runs" / "baseline", ["data.image_size=16"],
                        {"val/acc_best": 0.8, "test/acc": 0.75, "epochs": 2})
    out, board = compare(tmp_path, sweep_dir, baseline)
    assert list(board.index) == ["2", "baseline", "1", "0"]  # ranked by val/acc_best
    assert board.loc["baseline", "optimizer.lr"] == UNSET
    assert board.loc["baseline", "model.backbone.activation"] == UNSET
    assert board.loc["0", "data.image_size"] == UNSET and board.loc["baseline",
                                                                      "data.image_size"] == "16"
    assert board.loc["2", "optimizer.lr"] == "0.01"
    assert "| (unset) |" in (out / "leaderboard.md").read_text()

    dims = html_dimensions(out)
    lr = dims["optimizer.lr (log)"]  # tag(log, ...) in the sweep config: a log axis
    by_run = dict(zip(pd.read_csv(out / "leaderboard.csv")["run"].astype(str), lr["values"],
                      strict=True))
    assert by_run["0"] == pytest.approx(-4) and by_run["2"] == pytest.approx(-2)
    assert by_run["baseline"] < -4  # "(unset)" below the smallest value, with its own tick
    ticks = dict(zip(lr["ticktext"], lr["tickvals"], strict=True))
    assert ticks[UNSET] == pytest.approx(by_run["baseline"])
    assert ticks["0.001"] == pytest.approx(-3)  # the ticks name the real values
    activation = dims["model.backbone.activation"]
    assert activation["ticktext"] == [UNSET, "relu", "tanh"]
    assert [activation["ticktext"][v] for v in activation["values"]] == [
        "relu", UNSET, "tanh", "relu"]
    assert [k for k in dims if "(log)" in k] == ["optimizer.lr (log)"]  # only lr is log-scale


def test_two_single_runs_with_different_overrides(tmp_path):
    a = fake_run(tmp_path / "a", ["optimizer.lr=0.01"], {"val/acc_best": 0.6, "test/acc": 0.5})
    b = fake_run(tmp_path / "b", ["model.backbone.activation=tanh"],
                 {"val/acc_best": 0.7, "test/acc": 0.6})
    out, board = compare(tmp_path, a, b)
    assert board.loc["a", "model.backbone.activation"] == UNSET
    assert board.loc["b", "optimizer.lr"] == UNSET and board.loc["a", "optimizer.lr"] == "0.01"
    dims = html_dimensions(out)
    lr = dims["optimizer.lr"]  # no sweep config: a linear axis
    assert UNSET in lr["ticktext"] and 0.01 in lr["values"]
    assert dims["model.backbone.activation"]["ticktext"] == [UNSET, "tanh"]


def test_numbers_mixed_with_words_and_unset_are_one_categorical_axis(tmp_path):
    runs = [fake_run(tmp_path / name, overrides, {"val/acc_best": acc, "test/acc": acc})
            for name, overrides, acc in [("a", ["model.backbone.dropout=0.5"], 0.9),
                                         ("b", ["model.backbone.dropout=none"], 0.8),
                                         ("c", ["model.backbone.dropout=0.25"], 0.7),
                                         ("d", ["seed=3"], 0.6)]]
    out, board = compare(tmp_path, *runs)
    assert list(board["model.backbone.dropout"]) == ["0.5", "none", "0.25", UNSET]
    dropout = html_dimensions(out)["model.backbone.dropout"]
    # numbers in numeric order, then words, "(unset)" first
    assert dropout["ticktext"] == [UNSET, "0.25", "0.5", "none"]
    assert [dropout["ticktext"][v] for v in dropout["values"]] == ["0.5", "none", "0.25", UNSET]


def test_a_log_distribution_in_the_study_gives_a_log_axis(tmp_path):
    """A search space given on the command line is only in the study (not in hydra.yaml)."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    study = optuna.create_study(study_name="cli", storage=f"sqlite:///{sweep / 'optuna.db'}",
                                direction="maximize")
    dists = {"optimizer.lr": FloatDistribution(1e-5, 1e-1, log=True),
             "model.backbone.dropout": FloatDistribution(0.0, 0.5),
             "model.backbone.activation": CategoricalDistribution(["relu", "tanh"])}
    for n, (lr, dropout, act) in enumerate([(1e-5, 0.1, "relu"), (1e-3, 0.2, "tanh"),
                                            (1e-1, 0.4, "relu"), (3e-3, 0.3, "tanh")]):
        params = {"optimizer.lr": lr, "model.backbone.dropout": dropout,
                  "model.backbone.activation": act}
        acc = 0.5 + 0.1 * n
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=acc))
        fake_run(sweep / str(n), [f"{k}={v}" for k, v in params.items()],
                 {"val/acc_best": acc, "test/acc": acc})
    write_results(study, sweep, f"sqlite:///{sweep / 'optuna.db'}")
    out, _ = compare(tmp_path, sweep)
    assert (out / "importance.png").stat().st_size > 0
    dims = html_dimensions(out)
    lr = dims["optimizer.lr (log)"]
    board = pd.read_csv(out / "leaderboard.csv")
    assert lr["values"] == pytest.approx(np.log10(board["optimizer.lr"]).tolist())
    assert len(lr["ticktext"]) >= 3  # the ticks name the real values at their log10
    assert all(math.log10(float(t)) == pytest.approx(v, abs=0.01)
               for t, v in zip(lr["ticktext"], lr["tickvals"], strict=True))
    assert dims["model.backbone.dropout"]["values"] == board["model.backbone.dropout"].tolist()


def test_a_kfold_cv_next_to_a_sweep(tmp_path, sweep_dir):
    cv = tmp_path / "cv"
    for job, (fold, lr) in enumerate([(0, 0.001), (1, 0.001), (0, 0.003), (1, 0.003)]):
        acc = 0.6 + lr * 10 + fold / 100
        fake_run(cv / str(job), ["data.kfold=2", f"data.fold={fold}", f"optimizer.lr={lr}"],
                 {"val/acc_best": acc, "test/acc": acc})
    out, board = compare(tmp_path, cv, sweep_dir)
    # both multiruns have a job 0: the parent folders tell the runs apart
    assert sorted(board.index) == [*(f"cv/{j}" for j in range(4)),
                                   *(f"digits_optuna/{j}" for j in range(3))]
    assert board.loc["digits_optuna/0", "data.fold"] == UNSET
    assert board.loc["digits_optuna/2", "data.kfold"] == UNSET
    assert board.loc["cv/2", "data.fold"] == "0"
    by_config = pd.read_csv(out / "leaderboard_by_config.csv").set_index("configuration")
    assert by_config["runs"].to_dict() == {"data.kfold=2,optimizer.lr=0.003": 2,
                                           "data.kfold=2,optimizer.lr=0.001": 2}
    dims = html_dimensions(out)
    assert dims["data.fold"]["ticktext"][0] == UNSET
    assert "optimizer.lr (log)" in dims  # the sweep's scale, for the CV's values too


def test_values_set_by_a_config_file_show_as_the_runs_resolved_values(tmp_path, sweep_dir):
    """Trials whose data.image_size and backbone came from the hparams_search / experiment
    file (not their overrides) next to k-fold runs that set them on the command line."""
    for n in range(3):
        run = sweep_dir / str(n)
        (run / ".hydra" / "config.yaml").write_text(
            "data:\n  image_size: 16\n  ratios: [0.8, 0.1, 0.1]\nmodel:\n  mixup:\n"
            "    enabled: false\n")
        hydra = yaml.safe_load((run / ".hydra" / "hydra.yaml").read_text())
        hydra["hydra"]["runtime"] = {"choices": {"model/backbone": "simple_cnn"}}
        (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    cv = tmp_path / "cv"
    for fold in (0, 1):
        fake_run(cv / str(fold), ["data.kfold=2", f"data.fold={fold}", "data.image_size=16",
                                  "data.ratios=[0.8,0.1,0.1]", "model.mixup.enabled=true",
                                  "model/backbone=timm"],
                 {"val/acc_best": 0.5, "test/acc": 0.5})
    out, board = compare(tmp_path, cv, sweep_dir)
    assert "data.image_size" not in board.columns  # 16 in every run: nothing to compare
    assert "data.ratios" not in board.columns  # the list written alike either way
    assert board.loc["digits_optuna/0", "model.mixup.enabled"] == "False"
    assert board.loc["cv/0", "model.mixup.enabled"] == "True"
    assert board.loc["digits_optuna/1", "model/backbone"] == "simple_cnn"
    assert board.loc["digits_optuna/1", "data.kfold"] == UNSET  # not a key of its config


def test_log_ticks_are_whole_decades_and_a_constant_column_has_one_tick():
    board = pd.DataFrame({"run": ["0", "1", "2", "b"], "optimizer.lr": [1.6e-5, 2e-4, 1.2e-3, UNSET],
                          "data.image_size": [UNSET, UNSET, UNSET, 16],
                          "val/acc_best": [0.1, 0.2, 0.3, 0.4]})
    fig = parallel_coordinates_figure(board, "val/acc_best", frozenset({"optimizer.lr"}))
    dims = {d["label"]: d for d in fig.to_plotly_json()["data"][0]["dimensions"]}
    assert dims["optimizer.lr (log)"]["ticktext"] == [UNSET, "0.0001", "0.001"]
    assert dims["optimizer.lr (log)"]["tickvals"][1:] == [-4.0, -3.0]
    assert dims["data.image_size"]["ticktext"] == [UNSET, "16"]


def test_a_resume_launch_folder_is_not_listed_as_a_failed_run(tmp_path):
    """A resume continues in its checkpoint's run; the folder it was launched in has no
    metrics and was shown as FAIL."""
    runs = tmp_path / "runs"
    first = fake_run(runs / "first", [], {"val/acc_best": 0.6, "test/acc": 0.5})
    launch = runs / "launch" / ".hydra"
    launch.mkdir(parents=True)
    (launch / "config.yaml").write_text(f"ckpt_path: {first}/checkpoints/last.ckpt\n")
    (launch / "overrides.yaml").write_text(f"- ckpt_path={first}/checkpoints/last.ckpt\n")
    failed = runs / "failed" / ".hydra"  # a run that really failed stays listed
    failed.mkdir(parents=True)
    (failed / "config.yaml").write_text("ckpt_path: null\n")
    (failed / "overrides.yaml").write_text("- optimizer.lr=10\n")
    _, board = compare(tmp_path, runs)
    assert sorted(board.index) == ["failed", "first"]
    assert board.loc["failed", "status"] == "FAIL"


def test_compare_shows_each_runs_environment_hash(tmp_path):
    from imgexp.tracking.environment import environment_hash

    runs = []
    for name, torch_version in [("a", "2.14.1"), ("b", "2.15.0")]:
        run = fake_run(tmp_path / name, [f"seed={len(runs)}"],
                                {"val/acc_best": 0.5, "test/acc": 0.4})
        (run / "run_info.json").write_text(json.dumps(
            {"env_hash": environment_hash({"torch": torch_version})}))
        runs.append(run)
    runs.append(fake_run(tmp_path / "c", ["seed=9"], {"val/acc_best": 0.1,
                                                              "test/acc": 0.1}))  # no run_info
    out, board = compare(tmp_path, *runs)
    assert board.loc["a", "env"] == environment_hash({"torch": "2.14.1"})
    assert board.loc["b", "env"] == environment_hash({"torch": "2.15.0"})
    assert board.loc["c", "env"] == ""
    assert environment_hash({"torch": "2.15.0"}) in (out / "leaderboard.md").read_text()
