"""Effect tests for predict options that had none (tests/EFFECTS.md): each moves one option and
measures what it is said to change."""


import pandas as pd

from helpers.config import compose_config
from imgexp.predict.pipeline import predict_folder


def test_predict_top_k_sets_the_listed_classes(tmp_path, digits_ckpt, digits_root):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for p in sorted((digits_root / "7").glob("*.png"))[:3]:
        (inputs / p.name).write_bytes(p.read_bytes())

    def columns(top_k):
        out = tmp_path / f"out{top_k}"
        cfg = compose_config("predict", [f"ckpt_path={digits_ckpt}", f"input={inputs}",
                                         f"output={out}", "predict.num_workers=0", "device=cpu",
                                         "predict.mode=none", f"predict.top_k={top_k}"],
                             tmp_path / f"run{top_k}")
        predict_folder(cfg)
        table = pd.read_csv(out / "predictions.csv", dtype=str)
        return [c for c in table.columns if c.startswith("top")], table

    listed, _ = columns(1)
    assert listed == ["top1_class", "top1_score"]
    listed, table = columns(4)
    assert listed == [f"top{k}_{w}" for k in range(1, 5) for w in ("class", "score")]
    assert (table["top1_class"] == table["predicted"]).all()
