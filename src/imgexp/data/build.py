"""A data module from a composed config (data + augmentation), the way every stage builds one:
training from conf/train.yaml, the checkpoint-reading stages from the config a checkpoint
carries (imgexp.models.data_config)."""

from hydra.utils import instantiate
from omegaconf import DictConfig

from imgexp.data.datamodule import ImageDataModule


def build_datamodule(cfg: DictConfig) -> ImageDataModule:
    aug = cfg.get("augmentation")
    # an empty pipeline (augmentation=none) is no augmentation, and skips albumentations' import
    augmentation = instantiate(aug) if aug and aug.get("transforms", True) else None
    return instantiate(cfg.data, augmentation=augmentation, _recursive_=False)
