"""A run pays only for the imports it uses: a SimpleCNN without augmentation builds its data
and model without importing timm or albumentations (seconds of a short run's start-up)."""

import json
import os
import subprocess
import sys

SCRIPT = """
import json, sys
from pathlib import Path
from helpers.config import train_config
from imgexp.data.build import build_datamodule
from imgexp.models import build_model

seen = {}
for aug in ("none", "light"):
    cfg = train_config([f"augmentation={aug}", "data.image_size=16"], Path(sys.argv[1]) / aug,
                       Path(sys.argv[2]))
    dm = build_datamodule(cfg)
    dm.setup()
    build_model(cfg, dm.classes, dm.train_labels())
    seen[aug] = {m: m in sys.modules for m in ("timm", "albumentations")}
    seen[aug]["augment"] = dm.datasets["train"].augment is not None
print(json.dumps(seen))
"""


def test_simple_cnn_without_augmentation_imports_neither_timm_nor_albumentations(
        tmp_path, data_dir):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), str(data_dir)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["none"] == {"timm": False, "albumentations": False, "augment": False}
    # the control: an augmentation that has transforms is built (and imports albumentations)
    assert seen["light"]["albumentations"] and seen["light"]["augment"]
