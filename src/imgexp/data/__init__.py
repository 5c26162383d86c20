"""Images in, batches out. Names load on first use (PEP 562) so that stages which only read
files (imgexp-prepare) do not pay for importing torch and Lightning."""

from importlib import import_module

_HOMES = {"ImageDataModule": "datamodule", "read_manifest": "datamodule",
          "UnreadableImage": "image_io", "load_rgb": "image_io", "open_image": "image_io"}

__all__ = ["ImageDataModule", "UnreadableImage", "load_rgb", "open_image", "read_manifest"]


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
