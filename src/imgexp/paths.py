"""Where the clone lives: configs and default data/output folders are found relative to it.

The project is used from its clone with an editable install (as lightning-hydra-template is),
so the repository root is two levels above this package.
"""

import os
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("PROJECT_ROOT", Path(__file__).resolve().parents[2]))
CONFIG_DIR = PROJECT_ROOT / "conf"

# Configs interpolate ${oc.env:PROJECT_ROOT}; set it once for every entry point.
os.environ.setdefault("PROJECT_ROOT", str(PROJECT_ROOT))
