"""k-fold CV through a multirun and its mean ± std in imgexp-compare; exact relaunch of a run."""

import json
import statistics

import pandas as pd
import pytest

from helpers.sweeps import TINY, multirun, run_stage


@pytest.mark.slow
def test_kfold_multirun_is_aggregated_per_configuration(tmp_path, data_dir):
    sweep = tmp_path / "cv"
    multirun(tmp_path, data_dir, "data.kfold=2", "data.fold=0,1", "optimizer.lr=0.001,0.003",
             "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}")
    splits = [pd.read_csv(sweep / str(j) / "data_split.csv") for j in range(4)]
    vals = [set(s.path[s.split == "val"]) for s in splits]
    assert vals[0].isdisjoint(vals[1]) or vals[0].isdisjoint(vals[2])  # folds differ
    assert all(set(s.path[s.split == "test"]) == set(splits[0].path[splits[0].split == "test"])
               for s in splits)

    out = tmp_path / "compare"
    run_stage("imgexp.compare", [f"dirs=[{sweep}]", f"hydra.run.dir={out}",
                                 "metrics=[test/acc,val/acc_best]"])
    assert len(pd.read_csv(out / "leaderboard.csv")) == 4
    by_config = pd.read_csv(out / "leaderboard_by_config.csv").set_index("configuration")
    assert sorted(by_config.index) == ["optimizer.lr=0.001", "optimizer.lr=0.003"]
    for job in range(4):
        overrides = (sweep / str(job) / ".hydra" / "overrides.yaml").read_text()
        assert "data.kfold=2" in overrides
    for lr in ("0.001", "0.003"):
        accs = [json.loads((sweep / str(j) / "metrics.json").read_text())["test/acc"]
                for j in range(4)
                if f"optimizer.lr={lr}" in (sweep / str(j) / ".hydra" / "overrides.yaml").read_text()]
        row = by_config.loc[f"optimizer.lr={lr}"]
        assert row["runs"] == 2
        assert row["test/acc mean"] == pytest.approx(statistics.mean(accs))
        assert row["test/acc std"] == pytest.approx(statistics.stdev(accs))
    assert "±" in (out / "leaderboard.md").read_text()


@pytest.mark.slow
def test_a_run_relaunched_from_its_hydra_dir_gives_identical_metrics(tmp_path, data_dir):
    first, again = tmp_path / "first", tmp_path / "again"
    run_stage("imgexp.train", [f"hydra.run.dir={first}", f"paths.data_dir={data_dir}", *TINY,
                               "trainer.deterministic=true"])
    run_stage("imgexp.train", ["--config-path", str(first / ".hydra"), "--config-name", "config",
                               f"hydra.run.dir={again}"])
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (first, again))
    assert a.pop("best_model_path").startswith(str(first))
    assert b.pop("best_model_path").startswith(str(again))
    assert a == b and a["test/acc"] > 0.2
    info = json.loads((again / "run_info.json").read_text())
    assert info["manifest_hash"] == json.loads((first / "run_info.json").read_text())[
        "manifest_hash"]


@pytest.mark.slow
def test_wandb_offline_run_lives_in_the_run_dir_and_prints_its_sync_command(tmp_path, data_dir):
    proc = run_stage("imgexp.train", [
        f"hydra.run.dir={tmp_path}", f"paths.data_dir={data_dir}", "logger=wandb",
        "~callbacks.progress_bar", "trainer.enable_progress_bar=false", "trainer=debug",
        "data.image_size=16"])
    offline = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("run-*.wandb"))
    assert f"wandb sync {offline[0]}" in proc.stdout + proc.stderr
