"""Compose the project's configs in a test as the command line does."""

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from imgexp.paths import CONFIG_DIR

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
