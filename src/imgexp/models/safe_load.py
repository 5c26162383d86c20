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

import functools
import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from imgexp.errors import ImgexpError
from imgexp.paths import CONFIG_DIR

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


# What a config read from a checkpoint may name as a `_target_`: Hydra calls it. A file that
# passes the weights-only unpickler can still name any callable there (torch.load on bytes it
# carries, builtins.exec, a writer), so only imgexp's own building blocks (those its configs
# name) and the classes it uses from these libraries are called; more with IMGEXP_TRUST_TARGETS.
_LIBRARY_CLASSES = re.compile(r"(albumentations|torch\.optim|lightning\.pytorch\.callbacks|"
                              r"lightning\.pytorch\.loggers)\.[A-Z]\w*|lightning\.Trainer")
TRUST_VARIABLE = "IMGEXP_TRUST_TARGETS"


@functools.cache
def _project_targets() -> frozenset[str]:
    files = [*CONFIG_DIR.rglob("*.yaml"), *Path(__file__).parents[1].rglob("conf/*.yaml")]
    return frozenset(match for file in files
                     for match in re.findall(r"_target_:\s*([\w.]+)", file.read_text()))


def trusted_target(target: str, also: Iterable[str] = ()) -> bool:
    """`also`: targets the user named on this command line (theirs to run)."""
    prefixes = [p.strip() for p in os.environ.get(TRUST_VARIABLE, "").split(",") if p.strip()]
    return (target in _project_targets() or bool(_LIBRARY_CLASSES.fullmatch(target))
            or target in set(also)
            or any(target == p or target.startswith(p.rstrip(".") + ".") for p in prefixes))


def untrusted_targets(config, key: str = "", also: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(key, target) for every `_target_` under `config` (plain containers) not trusted."""
    found = []
    if isinstance(config, dict):
        target = config.get("_target_")
        if target is not None and not (isinstance(target, str) and trusted_target(target, also)):
            found.append((key or "(top)", str(target)))
        for name, value in config.items():
            found += untrusted_targets(value, f"{key}.{name}" if key else str(name), also)
    elif isinstance(config, list):
        for i, value in enumerate(config):
            found += untrusted_targets(value, f"{key}[{i}]", also)
    return found


def check_targets(path: str | Path, config, skip: tuple[str, ...] = (),
                  also: Iterable[str] = ()) -> None:
    """Refuse, in one line, a config from `path` that names a callable imgexp does not trust
    (`skip`: top-level keys this stage never instantiates)."""
    shown = {k: v for k, v in config.items() if k not in skip} if isinstance(config, dict) \
        else config
    if found := untrusted_targets(shown, also=also):
        key, target = found[0]
        raise ImgexpError(
            f"{path} is refused: its config names {target} at {key}, which is not one of "
            "imgexp's building blocks, and instantiating it could run code. If it is your own "
            f"code, add its module to {TRUST_VARIABLE} (e.g. {TRUST_VARIABLE}=mypackage)")
