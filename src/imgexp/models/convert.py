"""python -m imgexp.models.convert OLD NEW: re-save a checkpoint or weights file that imgexp
refuses to open (it holds pickled objects besides tensors: a Lightning checkpoint of another
project whose hyperparameters are OmegaConf objects or paths, numpy arrays...) as tensors and
plain data only, which every stage then reads.

Run it ONLY on a file you trust: reading OLD unpickles it fully, which runs any code it holds.
OmegaConf containers become dicts/lists, paths strings, numpy values tensors or numbers;
anything else is left out and listed.
"""

import sys
from collections.abc import Mapping
from pathlib import Path, PurePath

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from imgexp.atomic import atomic_path
from imgexp.models.safe_load import safe_load

PLAIN = (str, int, float, bool, type(None))


def plain(value, where: str, dropped: list[str]):
    """`value` as tensors and plain containers; what has no plain form is appended (by its
    place in the file) to `dropped` and returned as None."""
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value, resolve=False)
    if torch.is_tensor(value):
        return value.as_subclass(torch.Tensor)
    if isinstance(value, PLAIN):
        return value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, np.ndarray) and value.dtype != object:
        return torch.from_numpy(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {key: plain(item, f"{where}.{key}", dropped) for key, item in value.items()
                if isinstance(key, PLAIN)}
    if isinstance(value, list | tuple):
        return [plain(item, f"{where}[{i}]", dropped) for i, item in enumerate(value)]
    dropped.append(f"{where} ({type(value).__module__}.{type(value).__qualname__})")
    return None


def convert(old: Path, new: Path) -> list[str]:
    """Write `new` from the trusted file `old`; returns what was left out."""
    dropped: list[str] = []
    data = plain(torch.load(old, map_location="cpu", weights_only=False), "file", dropped)
    with atomic_path(new) as tmp:
        torch.save(data, tmp)
    safe_load(new)  # what every stage will do with it
    return dropped


def main(argv: list[str]) -> int:
    if len(argv) != 2 or Path(argv[0]).resolve() == Path(argv[1]).resolve():
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    dropped = convert(Path(argv[0]), Path(argv[1]))
    print(f"wrote {argv[1]} (tensors and plain data only)"
          + (f"; left out: {', '.join(dropped)}" if dropped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
