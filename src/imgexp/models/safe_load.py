"""Open a checkpoint or weights file as data only.

A .ckpt/.pth file is a pickle: unpickled freely (torch.load(weights_only=False)) it runs any
code it names while it is opened, before anything can check what it is. Every file imgexp
reads goes through torch's weights-only unpickler instead, which rebuilds tensors and plain
containers (dict, list, str, numbers) and refuses everything else. That is all a checkpoint
imgexp writes holds: the run's config is stored as plain containers (never OmegaConf objects,
since the first checkpoint format), and Lightning's loops, callbacks, optimizer and scheduler
states are plain too (tests/hostile/test_checkpoints.py loads each kind this way). So no type
is added to torch's allow-list: a file that needs one did not come from imgexp as it is.
(model.backbone.checkpoint_path goes through timm's reader, which also allows the
argparse.Namespace of timm's own training checkpoints: a bag of attributes, no code.)
"""

import re
import warnings
from pathlib import Path
from typing import Any

import torch

from imgexp.errors import ImgexpError

CONVERT = "python -m imgexp.models.convert"


def load_error(path: str | Path, error: Exception, advice: str, key: str = "") -> ImgexpError:
    """The one line for a file torch.load could not open (`key`: the option that named it).
    A pickled global the weights-only unpickler refused (posix.system,
    omegaconf.dictconfig.DictConfig...) is named, with the way out; anything else (text, empty,
    cut short, a folder, a pickle torch.save did not write) is not a readable file."""
    label = f"{key}={path}" if key else str(path)
    # timm re-raises torch's refusal as a RuntimeError caused by it
    if found := re.search(r"GLOBAL (\S+)", f"{error} {error.__cause__}"):
        return ImgexpError(
            f"{label} is refused: it needs {found[1]}, which no imgexp checkpoint holds, and "
            "opening it could run code; only tensors and plain data are read. If you trust its "
            f"source, keep only its data with `{CONVERT} {path} NEW.ckpt` and use NEW.ckpt")
    kind = "a folder" if Path(path).is_dir() else type(error).__name__
    return ImgexpError(f"{label} is not a readable checkpoint ({kind}): {advice}")


def safe_load(path: str | Path, advice: str = "point at a file a training run wrote "
              "(RUN/checkpoints/best.ckpt)", key: str = "") -> Any:
    """torch.load of `path` (on the CPU) as tensors and plain data only; a file that needs
    any other type, or is no torch file at all, stops in one line (`advice`: what to do,
    `key`: the option that named the file)."""
    try:
        with warnings.catch_warnings():  # torch's note on a bare pickle: the line below says it
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - pickle/zip/torch each say it their way
        raise load_error(path, error, advice, key) from None
