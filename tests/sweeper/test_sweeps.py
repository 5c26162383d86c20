"""The optuna sweeper end to end: pruning, resume, failures, launchers, imgexp-compare."""

import json
import re
from pathlib import Path

import optuna
import pandas as pd
import pytest
from hydra.core.config_store import ConfigStore
from hydra.utils import instantiate
from omegaconf import OmegaConf

from helpers.config import compose_config
from helpers.images import class_folders
from helpers.sweeps import multirun, run_stage
from hydra_plugins.imgexp_optuna_sweeper import config as _registers_the_groups  # noqa: F401
from hydra_plugins.imgexp_optuna_sweeper._search_space import grid_values, parse_search_space
from imgexp.paths import CONFIG_DIR


def _results(sweep_dir):
    return OmegaConf.to_container(OmegaConf.load(sweep_dir / "optimization_results.yaml"))


@pytest.fixture(scope="module")
def digits_sweep(tmp_path_factory, data_dir):
    """hparams_search=digits_optuna run once (8 trials), then again with n_trials=12."""
    log_dir = tmp_path_factory.mktemp("sweeps")
    sweep_dir = log_dir / "train" / "sweeps" / "digits_optuna"
    multirun(log_dir, data_dir, "hparams_search=digits_optuna")
    first = _results(sweep_dir)
    multirun(log_dir, data_dir, "hparams_search=digits_optuna", "hydra.sweeper.n_trials=12")
    return sweep_dir, first, _results(sweep_dir)


@pytest.mark.slow
def test_digits_optuna_prunes_and_records_every_trial(digits_sweep):
    sweep_dir, first, _ = digits_sweep
    trials = first["trials"]
    assert [t["number"] for t in trials] == list(range(8))
    states = [t["state"] for t in trials]
    assert "PRUNED" in states and "COMPLETE" in states and set(states) <= {"COMPLETE", "PRUNED"}
    for t in trials:  # each trial ran in its own job dir, numbered like the trial
        metrics = json.loads((sweep_dir / str(t["number"]) / "metrics.json").read_text())
        assert t["job_dir"] == str(sweep_dir / str(t["number"]))
        assert metrics["trial/pruned"] == (t["state"] == "PRUNED")
        if t["state"] == "PRUNED":  # stopped before max_epochs, not tested
            assert metrics["trial/pruned_epoch"] <= 1 and "test/acc" not in metrics
        else:
            assert t["value"] == pytest.approx(metrics["val/acc_best"])
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    best = max(complete, key=lambda t: t["value"])
    assert first["best_value"] == best["value"] and first["best_params"] == best["params"]
    assert first["best_job_dir"] == best["job_dir"]
    # the pruner saw the per-epoch values the trials reported through the storage
    study = optuna.load_study(study_name="digits_optuna", storage=first["storage"])
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert all(t.intermediate_values for t in pruned)


@pytest.mark.slow
def test_rerun_with_more_trials_continues_the_same_study(digits_sweep):
    sweep_dir, first, second = digits_sweep
    assert [t["number"] for t in second["trials"]] == list(range(12))
    assert second["trials"][:8] == first["trials"]  # nothing re-run or overwritten
    assert sorted(int(p.name) for p in sweep_dir.iterdir() if p.name.isdigit()) == list(range(12))


@pytest.mark.slow
def test_compare_on_the_sweep_writes_one_row_per_trial(digits_sweep, tmp_path):
    sweep_dir, _, results = digits_sweep
    run_stage("imgexp.compare", [f"dirs=[{sweep_dir}]", f"hydra.run.dir={tmp_path}"])
    for name in ("leaderboard.csv", "leaderboard.md", "curves.png", "parallel_coordinates.html",
                 "importance.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert len(board) == 12
    state = {t["number"]: t["state"] for t in results["trials"]}
    assert {int(r.run): r.status for r in board.itertuples()} == state
    assert board["val/acc_best"].iloc[0] == pytest.approx(results["best_value"])
    assert "optimizer.lr" in board.columns and "optuna_trial" not in " ".join(board.overrides)


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path, data_dir):
    """Grid over a valid and an impossible activation: one COMPLETE, one FAIL with its error."""
    multirun(tmp_path, data_dir, "hydra/sweeper=optuna", "hydra/sweeper/sampler=grid",
             "hydra.sweeper.n_trials=5", "hydra.sweeper.max_failure_rate=0.5",
             "model.backbone.activation=choice(relu,nosuch)", "trainer.max_epochs=1",
             f"hydra.sweep.dir={tmp_path}/sweep")
    results = _results(tmp_path / "sweep")
    by_activation = {t["params"]["model.backbone.activation"]: t for t in results["trials"]}
    assert len(results["trials"]) == 2  # the grid has two points
    assert by_activation["relu"]["state"] == "COMPLETE"
    assert by_activation["nosuch"]["state"] == "FAIL"
    assert "nosuch" in by_activation["nosuch"]["error"]
    assert results["best_params"] == {"model.backbone.activation": "relu"}
    # the failed job's own folder says why, in the one line a single run prints
    log = (Path(by_activation["nosuch"]["job_dir"]) / "train.log").read_text()
    assert "error: model.backbone.activation='nosuch'" in log, log


def test_too_many_failures_stop_the_sweep_with_the_results_written(tmp_path, data_dir):
    proc = multirun(tmp_path, data_dir, "hydra/sweeper=optuna", "hydra.sweeper.n_trials=4",
                    "hydra.sweeper.max_failure_rate=0.0", "optimizer.lr=interval(1e-4,1e-2)",
                    "model.backbone.nosuch_key=choice(1,2)", f"hydra.sweep.dir={tmp_path}/sweep",
                    check=False)
    assert proc.returncode != 0
    assert "max_failure_rate=0.0" in proc.stderr
    results = _results(tmp_path / "sweep")
    assert [t["state"] for t in results["trials"]] == ["FAIL"]  # stopped after the first
    assert "nosuch_key" in results["trials"][0]["error"]


@pytest.mark.slow
def test_submitit_local_runs_trials_that_report_to_the_study(tmp_path, data_dir):
    multirun(tmp_path, data_dir, "hydra/sweeper=optuna", "hydra/launcher=submitit_local",
             "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", "hydra/sweeper/pruner=median",
             "optimizer.lr=interval(1e-3,1e-2)", f"hydra.sweep.dir={tmp_path}/sweep",
             "hydra.launcher.timeout_min=10")
    results = _results(tmp_path / "sweep")
    assert [t["state"] for t in results["trials"]] == ["COMPLETE", "COMPLETE"]
    study = optuna.load_study(study_name="sweep", storage=results["storage"])
    assert all(sorted(t.intermediate_values) == [0, 1] for t in study.trials)
    assert list((tmp_path / "sweep" / ".submitit").iterdir())  # really went through submitit


@pytest.mark.parametrize("launcher", [
    "joblib", pytest.param("submitit_local", marks=pytest.mark.slow)])
def test_launchers_run_trials_on_a_photo_folder_with_its_loader_workers(launcher, tmp_path,
                                                                         data_dir):
    """A folder's default data.num_workers (2) under a launcher that runs trials in processes of
    its own: joblib's loky workers once failed every trial (`Please call iter(combined_loader)
    first`, the loader's dataset pickled for loky's spawn); a failing trial's log keeps its
    traceback, which the launcher does not carry back."""
    root = class_folders(tmp_path / "photos", {"a": 12, "b": 12}, size=20)
    sweep = tmp_path / "sweep"
    proc = multirun(tmp_path, data_dir, f"hydra/launcher={launcher}", "data=folder",
                    f"data.root={root}", "trainer.max_epochs=1", "seed=1,2",
                    f"hydra.sweep.dir={sweep}", "+callbacks.fail._target_=helpers.sweeps.FailJob",
                    "+callbacks.fail.job=1", *["hydra.launcher.timeout_min=10"] * (
                        launcher == "submitit_local"), check=False)
    assert OmegaConf.load(sweep / "0" / ".hydra" / "config.yaml").data.num_workers == 2
    assert (sweep / "0" / "metrics.json").is_file(), proc.stderr[-3000:]
    log = (sweep / "1" / "train.log").read_text()
    assert "Traceback" in log and "job 1 failed on purpose" in log


@pytest.mark.parametrize("launcher, target", [
    ("joblib", "JoblibLauncher"), ("submitit_slurm", "SlurmLauncher"),
    ("submitit_local", "LocalLauncher")])
def test_launcher_configs_compose_with_the_optuna_sweeper(launcher, target, tmp_path):
    cfg = compose_config("train", ["hparams_search=digits_optuna", f"hydra/launcher={launcher}"],
                         tmp_path)
    assert cfg.hydra.launcher._target_.endswith(target)
    assert cfg.hydra.sweeper._target_.endswith("imgexp_optuna_sweeper.optuna_sweeper.OptunaSweeper")
    assert cfg.hydra.sweeper.pruner._target_ == "optuna.pruners.MedianPruner"


def test_hparams_search_configs_compose(tmp_path):
    tounum = compose_config("train", ["hparams_search=tounum_optuna", "experiment=tounum_cnn",
                                      "data.root=/nowhere"], tmp_path)
    sweeper = tounum.hydra.sweeper
    assert sweeper.pruner._target_ == "optuna.pruners.HyperbandPruner"
    assert (sweeper.pruner.max_resource, sweeper.pruner.reduction_factor) == (10, 3)
    assert tounum.trainer.max_epochs == 10
    assert sweeper.params["model.backbone.dense_units"] == "range(32, 513, step=32)"


@pytest.mark.skipif(not (CONFIG_DIR / "experiment" / "gravure_triplet.yaml").is_file(),
                    reason="the metric-learning recipe (experiment=gravure_triplet) is not here")
def test_gravure_optuna_searches_keys_of_the_metric_learning_recipe(tmp_path):
    cfg = compose_config("train", ["experiment=gravure_triplet", "hparams_search=gravure_optuna",
                                   "data.root=/nowhere"], tmp_path)
    for key in cfg.hydra.sweeper.params:
        assert OmegaConf.select(cfg, key) is not None, key


def _readme_options(group: str) -> list[str]:
    """The options of hydra/sweeper/<group> the README's sweeper table lists; they must be
    the ones the plugin registers."""
    row = next(line for line in (CONFIG_DIR.parent / "README.md").read_text().splitlines()
               if line.startswith(f"| `{group}` |"))
    registered = {n.removesuffix(".yaml") for n in ConfigStore.instance().list(
        f"hydra/sweeper/{group}")}
    listed = [n for n in re.findall(rf"`(?:hydra/sweeper/{group}=)?(\w+)`", row)
              if n in registered]
    assert set(listed) == registered, f"README lists {listed}, the plugin has {registered}"
    return listed


SEARCH_OVERRIDES = {"digits_optuna": [], "tounum_optuna": ["experiment=tounum_cnn"],
                    "gravure_optuna": ["experiment=gravure_triplet"]}


@pytest.mark.parametrize("search", sorted(p.stem for p in (CONFIG_DIR / "hparams_search").glob(
    "*.yaml")))
def test_every_sampler_and_pruner_combines_with_every_hparams_search(search, tmp_path):
    """hparams_search files keep sampler/pruner-specific keys in their own group options, so
    choosing another sampler or pruner replaces them whole instead of failing to merge."""
    extra = SEARCH_OVERRIDES[search]
    if any(not (CONFIG_DIR / "experiment" / f"{o.split('=')[1]}.yaml").is_file() for o in extra):
        pytest.skip(f"{extra} is not here")
    for sampler in _readme_options("sampler"):
        for pruner in _readme_options("pruner"):
            cfg = compose_config("train", [f"hparams_search={search}", *extra, "data.root=/x",
                                           f"hydra/sweeper/sampler={sampler}",
                                           f"hydra/sweeper/pruner={pruner}"], tmp_path)
            sweeper = cfg.hydra.sweeper
            kwargs = {}
            if sampler == "grid":
                space, _ = parse_search_space([f"{k}={v}" for k, v in sweeper.params.items()])
                try:
                    kwargs["search_space"] = {k: grid_values(k, d) for k, d in space.items()}
                except ValueError as exc:  # an interval: the one-line advice, then next
                    assert "give it as range(lo, hi, step=...) or choice(...)" in str(exc)
                    continue
            made = instantiate(sweeper.sampler, **kwargs), instantiate(sweeper.pruner)
            names = [type(m).__name__.lower() for m in made]
            assert names[0].startswith(sampler), (sampler, names)
            assert names[1].startswith({"none": "nop"}.get(pruner, pruner)), (pruner, names)
    # with their own sampler and pruner, the searches keep their tuned settings
    cfg = compose_config("train", [f"hparams_search={search}", *extra, "data.root=/x"], tmp_path)
    assert cfg.hydra.sweeper.sampler.seed == cfg.seed
    if search == "digits_optuna":
        assert cfg.hydra.sweeper.sampler.n_startup_trials == 4
        assert cfg.hydra.sweeper.pruner.n_startup_trials == 2
    else:
        assert cfg.hydra.sweeper.pruner.max_resource == cfg.trainer.max_epochs


def test_digits_optuna_runs_with_the_random_sampler_and_no_pruner(tmp_path, data_dir):
    multirun(tmp_path, data_dir, "hparams_search=digits_optuna", "hydra/sweeper/sampler=random",
             "hydra/sweeper/pruner=none", "hydra.sweeper.n_trials=1",
             f"hydra.sweep.dir={tmp_path}/sweep")
    study = optuna.load_study(study_name="digits_optuna",
                              storage=f"sqlite:///{tmp_path}/sweep/optuna.db")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]
    assert study.user_attrs["imgexp_pruner"]["_target_"] == "optuna.pruners.NopPruner"
