"""Shared fixtures: the built-in digits exported once per session and a small trained
checkpoint. Helpers that tests import live in tests/helpers/, never here."""

import os
from pathlib import Path

import pytest
import torch

from helpers.config import train_config

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# the resume tests kill runs with a callback of their own (helpers.resume.KillAt), which the
# resumed run inherits: code of this suite, trusted like a user's own (imgexp.models.safe_load)
os.environ.setdefault("IMGEXP_TRUST_TARGETS", "helpers")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A data folder holding the exported digits (data_dir/digits/<class>/*.png)."""
    from imgexp.data.digits import ensure_digits

    root = tmp_path_factory.mktemp("data")
    ensure_digits(root / "digits")
    return root


@pytest.fixture(scope="session")
def digits_root(data_dir) -> Path:
    return data_dir / "digits"


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory, data_dir) -> Path:
    """A small softmax model trained on the digits (a few seconds); returns its run dir."""
    from imgexp.train.fit import fit_and_test

    run_dir = tmp_path_factory.mktemp("digits_run")
    cfg = train_config(["trainer.max_epochs=3", "data.image_size=16",
                        "model.backbone.channels=[16,32]"], run_dir, data_dir)
    fit_and_test(cfg)
    return run_dir


@pytest.fixture(scope="session")
def digits_ckpt(digits_run) -> Path:
    return digits_run / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="session")
def cbir_ckpt(tmp_path_factory, data_dir) -> Path:
    """Descriptors (colour + edge) + k-NN head on the digits: nothing to learn, one pass builds
    the gallery (a few seconds); the checkpoint has buffers but no parameters."""
    from imgexp.train.fit import fit_and_test

    run_dir = tmp_path_factory.mktemp("cbir_run")
    fit_and_test(train_config(["model/backbone=descriptors", "model/head=knn",
                               "model.backbone.kinds=[color,edge]", "data.image_size=16",
                               "model.backbone.color.bins=4", "model.backbone.color.slices=2"],
                              run_dir, data_dir))
    return run_dir / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="session")
def siamese_run(tmp_path_factory, data_dir) -> Path:
    """experiment=digits_siamese (contrastive loss over in-batch pairs), small and short."""
    from imgexp.train.fit import fit_and_test

    run_dir = tmp_path_factory.mktemp("siamese_run")
    fit_and_test(train_config(["experiment=digits_siamese", "data.image_size=16",
                               "model.backbone.channels=[16,32]", "model.head.dim=32",
                               "trainer.max_epochs=2", "~callbacks.progressive_unfreezing"],
                              run_dir, data_dir))
    return run_dir
