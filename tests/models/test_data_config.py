"""The one reading of a checkpoint's data config (eval, predict, explain and the app use it)."""

from types import SimpleNamespace

import pytest

from imgexp.errors import ImgexpError
from imgexp.models.data_config import resolve_data_config


def test_data_overrides_keep_the_checkpoint_image_size():
    trained = {"data": {"builtin": "digits", "root": "/d", "image_size": 16, "batch_size": 8}}
    model = SimpleNamespace(config=trained)
    cfg = resolve_data_config(model, None)
    assert cfg == trained["data"]
    other = resolve_data_config(model, {"root": "/mine", "image_size": 224, "manifest": None})
    assert other["root"] == "/mine" and other["builtin"] is None and other["image_size"] == 16


def test_datamodule_for_rebuilds_the_checkpoints_split_or_uses_the_users_root(digits_root,
                                                                              tmp_path):
    import shutil

    from imgexp.data import ImageDataModule
    from imgexp.models.data_config import datamodule_for

    data = {"_target_": "imgexp.data.ImageDataModule", "builtin": "digits",
            "root": str(digits_root), "manifest": None, "image_size": 8, "batch_size": 4,
            "num_workers": 0, "ratios": [0.7, 0.15, 0.15], "split_seed": 3}
    model = SimpleNamespace(config={"data": data}, class_names=[str(d) for d in range(10)])
    same = datamodule_for(model, {"root": None, "image_size": 64})
    trained = ImageDataModule(root=str(digits_root), split_seed=3)
    trained.resolve()
    assert same.split_table().equals(trained.split_table())
    assert same.image_size == 8  # the model's, whatever the override

    other = tmp_path / "other"
    for d in range(10):
        (other / str(d)).mkdir(parents=True)
        for f in sorted((digits_root / str(d)).iterdir())[:5]:
            shutil.copy(f, other / str(d) / f.name)
    moved = datamodule_for(model, {"root": str(other)})
    assert moved.root == str(other) and moved.builtin is None
    assert sum(len(ds) for ds in moved.datasets.values()) == 50
    assert not (other / ".export-complete").exists()  # no digits exported into user data

    shutil.rmtree(other / "9")
    with pytest.raises(ImgexpError, match="trained on"):
        datamodule_for(model, {"root": str(other)})
