"""imgexp-audit with a descriptor + k-NN checkpoint (audit.ckpt_path): its descriptors are the
label checks' features, through the content-keyed cache."""

import pytest

from helpers.app import GALLERY_CLASSES, PER_CLASS, make_gallery
from helpers.config import compose_config
from imgexp.audit.pipeline import run_audit
from imgexp.features.cache import FolderCache
from imgexp.features.extractor import FeatureExtractor
from imgexp.models import load_model


@pytest.fixture(scope="module")
def folder(tmp_path_factory, digits_root):
    return make_gallery(digits_root, tmp_path_factory.mktemp("audit_cbir") / "images")


def test_audit_label_checks_use_the_descriptor_checkpoint(folder, cbir_ckpt, tmp_path):
    cache = tmp_path / "cache"
    cfg = compose_config("audit", [f"data.root={folder}", f"audit.cache_dir={cache}",
                                   f"audit.ckpt_path={cbir_ckpt}", "audit.device=cpu",
                                   "audit.label_folds=2", "audit.label_neighbours=3"],
                         tmp_path / "run")
    summary = run_audit(cfg)
    assert summary["label_issues"]["check"].endswith("features: checkpoint)")
    # recorded: the run's own precision (trainer=cpu: fp32) unless $IMGEXP_PRECISION forces one
    assert summary["label_issues"]["precision"] in ("fp32", "bf16")
    # the rows the checks used are the checkpoint's descriptors, cached by file content
    extractor = FeatureExtractor.from_checkpoint(cbir_ckpt, mode="embed", device="cpu")
    rows = {}
    for label in GALLERY_CLASSES:
        rows |= FolderCache(cache, extractor.identity, folder / label).load()
    assert len(rows) == len(GALLERY_CLASSES) * PER_CLASS
    width = load_model(cbir_ckpt).backbone.num_features
    assert {row.shape for row in rows.values()} == {(width,)}
