from imgexp.data.datamodule import ImageDataModule, read_manifest
from imgexp.data.image_io import UnreadableImage, load_rgb, open_image

__all__ = ["ImageDataModule", "UnreadableImage", "load_rgb", "open_image", "read_manifest"]
