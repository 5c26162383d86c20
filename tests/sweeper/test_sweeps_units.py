"""Search-space parsing, k-fold splits and W&B run identity (fast, in-process)."""

from collections import Counter

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import open_dict, read_write
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from helpers.config import compose_config
from hydra_plugins.imgexp_optuna_sweeper._search_space import grid_values, parse_search_space
from imgexp.data import ImageDataModule
from imgexp.errors import ImgexpError
from imgexp.tracking.wandb_run import configuration_of, flatten_config, run_identity


def test_search_space_uses_hydra_sweep_syntax():
    space, fixed = parse_search_space([
        "optimizer.lr=tag(log, interval(1e-4, 1e-2))", "model.backbone.dropout=interval(0, 0.5)",
        "model.head.dim=int(interval(16, 64))", "model.backbone.dense_units=range(32, 513, step=32)",
        "model.backbone.activation=choice(relu, tanh)", "seed=1,2,3", "trainer.max_epochs=5"])
    assert space["optimizer.lr"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert space["model.backbone.dropout"] == FloatDistribution(0.0, 0.5)
    assert space["model.head.dim"] == IntDistribution(16, 64)
    # Hydra's range excludes its end: 32..512, as a basic sweep would run it
    assert space["model.backbone.dense_units"] == IntDistribution(32, 512, step=32)
    assert space["model.backbone.activation"] == CategoricalDistribution(["relu", "tanh"])
    assert space["seed"] == CategoricalDistribution([1, 2, 3])
    assert fixed == {"trainer.max_epochs": "5"}


def test_command_line_overrides_the_config_params():
    space, fixed = parse_search_space(["optimizer.lr=interval(1e-4, 1e-2)", "optimizer.lr=0.01"])
    assert space == {} and fixed == {"optimizer.lr": "0.01"}


def test_grid_values_enumerate_ranges_and_refuse_intervals():
    assert grid_values("u", IntDistribution(32, 128, step=32)) == [32, 64, 96, 128]
    assert grid_values("a", CategoricalDistribution(["relu", "tanh"])) == ["relu", "tanh"]
    with pytest.raises(ValueError, match="interval"):
        grid_values("lr", FloatDistribution(1e-4, 1e-2, log=True))


def test_kfold_folds_partition_train_and_val_and_keep_test(digits_root):
    def samples(**kw):
        dm = ImageDataModule(root=str(digits_root), split_seed=0, **kw)
        dm.resolve()
        return {split: {s.path for s in dm.samples if s.split == split}
                for split in ("train", "val", "test")}, dm

    plain, _ = samples()
    folds = [samples(kfold=5, fold=k) for k in range(5)]
    pool = plain["train"] | plain["val"]
    vals = [f["val"] for f, _ in folds]
    assert set().union(*vals) == pool and sum(map(len, vals)) == len(pool)  # a partition
    pool_per_class = Counter(s.label for s in folds[0][1].samples if s.split != "test")
    for f, dm in folds:
        assert f["test"] == plain["test"] and f["train"] == pool - f["val"]
        val_per_class = Counter(s.label for s in dm.samples if s.split == "val")
        for label, n in pool_per_class.items():  # stratified: a fifth of every class
            assert abs(val_per_class[label] - n / 5) < 1
    with pytest.raises(ImgexpError, match=r"data.fold=5 is out of range.*0\.\.4"):
        samples(kfold=5, fold=5)
    with pytest.raises(ImgexpError, match="data.kfold=1"):
        samples(kfold=1, fold=0)


def test_wandb_group_is_the_sweep_and_one_per_configuration_in_a_cv(tmp_path):
    cfg = compose_config("train", [], tmp_path)
    hc = cfg.hydra
    with read_write(hc), open_dict(hc):
        hc.mode = RunMode.MULTIRUN
        hc.sweep.dir = str(tmp_path / "2026-01-01_10-00-00")
        hc.runtime.choices.experiment = "digits_cnn"
        hc.job.override_dirname = "optimizer.lr=0.01"
        hc.overrides.task = ["optimizer.lr=0.01"]
    HydraConfig.instance().set_config(cfg)
    assert run_identity() == {"tags": ["digits_cnn"], "name": "optimizer.lr=0.01",
                              "group": "2026-01-01_10-00-00"}
    with read_write(hc), open_dict(hc):
        hc.overrides.task = ["data.fold=3", "optimizer.lr=0.01", "seed=7"]
    HydraConfig.instance().set_config(cfg)
    assert run_identity()["group"] == "2026-01-01_10-00-00/optimizer.lr=0.01"
    assert configuration_of(["data.fold=1", "++optuna_trial={number:1}", "a=2"]) == ("a=2", True)


def test_flatten_config_gives_dotted_keys():
    assert flatten_config({"optimizer": {"lr": 0.1, "betas": [0.9, 0.99]}, "seed": 1}) == {
        "optimizer.lr": 0.1, "optimizer.betas": [0.9, 0.99], "seed": 1}


def test_compare_refuses_folders_without_runs(tmp_path):
    from imgexp.compare.pipeline import find_runs

    with pytest.raises(ImgexpError, match="holds no run directory"):
        find_runs([str(tmp_path)])
    with pytest.raises(ImgexpError, match="is not a directory"):
        find_runs([str(tmp_path / "missing")])


def test_compare_leaves_out_an_empty_worker_folder_beside_others(tmp_path):
    """A sweep worker killed before its first trial leaves an empty folder: the README's
    `dirs='[w0,w1]'` still compares w1's runs (it stopped on w0 before)."""
    from imgexp.compare.pipeline import find_runs

    (tmp_path / "w0").mkdir()
    run = tmp_path / "w1" / "0" / ".hydra"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 1\n")
    assert find_runs([str(tmp_path / "w0"), str(tmp_path / "w1")]) == [tmp_path / "w1" / "0"]


def test_a_continued_study_does_not_replay_the_seeded_samplers_first_draws(tmp_path):
    """A rerun (or a second worker) after k trials draws from a seed mixed from (seed, k): seed
    42 again would propose trial 0's parameters once more and waste a trial."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from hydra_plugins.imgexp_optuna_sweeper._impl import OptunaSweeperImpl

    def open_study():
        impl = OptunaSweeperImpl(
            sampler=OmegaConf.create({"_target_": "optuna.samplers.RandomSampler", "seed": 42}),
            pruner=OmegaConf.create({"_target_": "optuna.pruners.NopPruner"}),
            direction="maximize", study_name="s", storage=None, n_trials=4, n_jobs=1,
            max_failure_rate=0.0, heartbeat_interval=60, grace_period=None, params={})
        impl.sweep_dir = Path(tmp_path)
        return impl._open_study({})

    first = open_study()
    lr = first.ask().suggest_float("lr", 1e-5, 1e-1, log=True)
    again = open_study()  # the study now holds one trial
    assert again.ask().suggest_float("lr", 1e-5, 1e-1, log=True) != lr


def test_workers_with_consecutive_seeds_do_not_draw_alike_when_one_joins_later():
    # seed + k made a worker seeded 10 that joined after 1 trial draw exactly like the worker
    # seeded 11 that started the study (the stranger saw two identical trials)
    from hydra_plugins.imgexp_optuna_sweeper._impl import joined_seed

    assert joined_seed(10, 1) != 11 and joined_seed(10, 1) == joined_seed(10, 1)
    assert len({joined_seed(s, k) for s in range(20) for k in range(1, 20)}) == 19 * 20
