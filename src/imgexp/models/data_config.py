"""What data and input size a checkpoint wants, read from the config it carries (after timm's
resolve_model_data_config): the same root/manifest, split ratios and seed as the run that
trained it, so eval, predict, explain and the app see exactly that run's images unless the
user points them elsewhere. The one place that reads a checkpoint's data config."""

from collections.abc import Mapping

from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from imgexp.data import ImageDataModule
from imgexp.data.build import build_datamodule
from imgexp.data.dataset import collate_skipping
from imgexp.data.splits import SPLITS, find_split_layout
from imgexp.errors import ImgexpError


def input_size(model) -> int:
    """The side of the square images the model was built for."""
    return int(model.config["data"]["image_size"])


def resolve_data_config(model, overrides: Mapping | None = None) -> dict:
    """The checkpoint's data config with the user's non-null `overrides` on top.

    Pointing at other images (root or manifest) drops the built-in dataset and the other
    source; the image size always stays the model's.
    """
    data = dict(model.config["data"])
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if "root" in given or "manifest" in given:
        data.update(builtin=None, root=None, manifest=None)
    data.update(given)
    data["image_size"] = input_size(model)
    return data


def checkpoint_datamodule(model, overrides: Mapping | None = None) -> ImageDataModule:
    """The data module of resolve_data_config (not resolved yet: callers choose how far)."""
    return build_datamodule(OmegaConf.create({"data": resolve_data_config(model, overrides)}))


def datamodule_for(model, overrides: Mapping | None = None) -> ImageDataModule:
    """checkpoint_datamodule, set up, refusing images of other classes than the model's."""
    datamodule = checkpoint_datamodule(model, overrides)
    datamodule.setup()
    if datamodule.classes != model.class_names:
        raise ImgexpError(f"the data at {datamodule.root} has classes {datamodule.classes} but "
                          f"the checkpoint was trained on {model.class_names}: point data.root "
                          "or data.manifest at images of the same classes")
    return datamodule


def split_loader(datamodule: ImageDataModule, split: str) -> DataLoader:
    """Every image of one split, in order, without augmentation."""
    if split not in SPLITS:
        raise ImgexpError(f"split={split!r} is not a split: use one of {list(SPLITS)}")
    dataset = datamodule.datasets[split]
    if len(dataset) == 0:
        others = [s for s in SPLITS if len(datamodule.datasets[s])]
        raise ImgexpError(f"the {split} split of {datamodule.root} has no images: choose "
                          f"split={' or split='.join(others)}" + (
                              "" if datamodule.root and find_split_layout(datamodule.root) else
                              " or check data.ratios"))
    return DataLoader(dataset, batch_size=datamodule.batch_size, shuffle=False,
                      num_workers=datamodule.num_workers, collate_fn=collate_skipping)
