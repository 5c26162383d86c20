"""imgexp-eval on a Siamese (contrastive) checkpoint: every retrieval metric, as for triplets."""

import json

import pytest

from helpers.config import compose_config
from imgexp.eval.pipeline import evaluate_checkpoint

pytestmark = pytest.mark.slow  # trains the Siamese model (shared with the app test)


def test_siamese_eval_reports_every_retrieval_metric(siamese_run, tmp_path):
    cfg = compose_config("eval", [f"ckpt_path={siamese_run / 'checkpoints' / 'best.ckpt'}",
                                  "log_to_run=false", "eval.progress=false"], tmp_path)
    metrics = evaluate_checkpoint(cfg)
    for key in ("test/precision_at_1", "test/map_at_r", "test/retrieval_map", "test/mmap_at_k",
                "test/knn_acc"):
        assert 0 < metrics[key] <= 1, key
    # pairs of the same class end closer than chance: retrieval well above 1 in 10 classes
    assert metrics["test/precision_at_1"] > 0.5 and metrics["test/map_at_r"] > 0.2
    # eval's k-NN vote over the checkpoint's gallery is the one training reported
    trained = json.loads((siamese_run / "metrics.json").read_text())
    assert metrics["test/acc"] == pytest.approx(trained["test/acc"], abs=0.02)
