"""Shared fixtures: the built-in digits exported once per session, a small trained checkpoint,
and a helper that composes conf/train.yaml like the command line does."""

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from imgexp.paths import CONFIG_DIR

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# fast defaults for composed test configs: CSV logger only, no progress bar
FAST = ["logger=csv", "~callbacks.progress_bar", "trainer.enable_progress_bar=false"]


def compose_config(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose conf/<config_name>.yaml with overrides, as the entry point would, rooted in
    output_dir (HydraConfig is set so ${hydra:...} and runtime choices resolve)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def train_config(overrides: list[str], output_dir: Path, data_dir: Path) -> DictConfig:
    return compose_config("train", [*FAST, f"paths.data_dir={data_dir}", *overrides], output_dir)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A data folder holding the exported digits (data_dir/digits/<class>/*.png)."""
    from imgexp.data.digits import ensure_digits

    root = tmp_path_factory.mktemp("data")
    ensure_digits(root / "digits")
    return root


@pytest.fixture(scope="session")
def digits_root(data_dir) -> Path:
    return data_dir / "digits"


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory, data_dir) -> Path:
    """A small softmax model trained on the digits (a few seconds); returns its run dir."""
    from imgexp.train.fit import fit_and_test

    run_dir = tmp_path_factory.mktemp("digits_run")
    cfg = train_config(["trainer.max_epochs=3", "data.image_size=16",
                        "model.backbone.channels=[16,32]"], run_dir, data_dir)
    fit_and_test(cfg)
    return run_dir


@pytest.fixture(scope="session")
def digits_ckpt(digits_run) -> Path:
    return digits_run / "checkpoints" / "best.ckpt"
