"""Where the clone lives (configs and default data/output folders are found relative to it),
and the check that a path joined onto a folder stays inside it.

The project is used from its clone with an editable install (as lightning-hydra-template is),
so the repository root is two levels above this package.
"""

import os
from pathlib import Path

from imgexp.errors import ImgexpError

PROJECT_ROOT = Path(os.environ.get("PROJECT_ROOT", Path(__file__).resolve().parents[2]))
CONFIG_DIR = PROJECT_ROOT / "conf"

# Configs interpolate ${oc.env:PROJECT_ROOT}; set it once for every entry point.
os.environ.setdefault("PROJECT_ROOT", str(PROJECT_ROOT))


def inside(folder: str | Path, relative: str | Path, what: str) -> Path:
    """`folder / relative`, refused unless its folder resolves inside `folder` (no `..`,
    absolute path or symlinked folder leading out): every name or relative path a stage joins
    onto a folder it writes to goes through here. The last component is not followed: a link
    there is what the caller moves or refuses to replace. `what` says where `relative` came
    from, for the one-line error."""
    path = Path(folder) / relative
    where = path.parent.resolve() / path.name
    if path.name in ("", "..") or not where.is_relative_to(Path(folder).resolve()):
        raise ImgexpError(f"{what} {str(relative)!r} leads outside {folder} (to "
                          f"{path.resolve()}): nothing was written there; fix the name")
    return path
