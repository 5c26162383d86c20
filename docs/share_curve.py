"""Redraw docs/share_curve.png (README, "Selecting images to annotate"): the select stage's own
share-curve picture at the default parameters of conf/select/default.yaml.

    PYTHONPATH=src python docs/share_curve.py
"""

from pathlib import Path

from omegaconf import OmegaConf

from imgexp.paths import CONFIG_DIR
from imgexp.select.share_plot import plot_share_curve

if __name__ == "__main__":
    s = OmegaConf.load(CONFIG_DIR / "select" / "default.yaml")
    out = plot_share_curve(Path(__file__).with_name("share_curve.png"), s.p_min, s.p_max, s.growth)
    print(out)
