"""Unit tests of predict's building blocks on hand-made inputs with known answers: unknown scores,
the threshold, placement and the input walk."""

import numpy as np
import pytest

from imgexp.errors import ImgexpError
from imgexp.models.inference import Outputs
from imgexp.models.scores import known_class_score, threshold_for_false_reject_rate
from imgexp.predict.pipeline import list_inputs
from imgexp.predict.sorting import place


def test_threshold_for_false_reject_rate_rejects_at_most_that_fraction():
    scores = np.linspace(0.01, 1.0, 100)
    t = threshold_for_false_reject_rate(scores, 0.05)
    assert (scores < t).mean() == pytest.approx(0.05)
    assert threshold_for_false_reject_rate(scores, 0.0) == pytest.approx(0.01)
    with pytest.raises(ImgexpError, match="threshold_for_frr"):
        threshold_for_false_reject_rate(scores, 1.5)


def test_energy_score_is_logsumexp_of_logits():
    logits = np.array([[2.0, 0.0], [10.0, 10.0]], dtype=np.float32)
    out = Outputs(index=np.arange(2), proba=np.array([[.88, .12], [.5, .5]]), logits=logits)
    assert known_class_score(out, "energy") == pytest.approx(
        [np.log(np.exp(2) + 1), 10 + np.log(2)], rel=1e-6)
    assert known_class_score(out, "softmax").tolist() == [.88, .5]
    with pytest.raises(ImgexpError, match="predict.ood"):
        known_class_score(out, "odin")


@pytest.mark.parametrize("mode", ["copy", "hardlink", "symlink"])
def test_place_never_overwrites(tmp_path, mode):
    src_a, src_b = tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"
    for src, data in ((src_a, b"first"), (src_b, b"second")):
        src.parent.mkdir()
        src.write_bytes(data)
    out = tmp_path / "out"
    first, second = place(src_a, out, "cls", mode), place(src_b, out, "cls", mode)
    assert (first.name, second.name) == ("x.png", "x_1.png")
    assert first.read_bytes() == b"first" and second.read_bytes() == b"second"
    assert src_a.read_bytes() == b"first"  # sources untouched
    assert (mode == "symlink") == second.is_symlink()
    assert place(src_a, out, "cls", "none") is None


def test_list_inputs_skips_hidden_files_and_the_output_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "out" / "3").mkdir(parents=True)
    for name in ["a.png", "sub/b.jpg", "notes.txt", ".hidden.png", "Thumbs.db", "out/3/a.png"]:
        (tmp_path / name).write_bytes(b"x")
    got = [p.relative_to(tmp_path).as_posix() for p in list_inputs(tmp_path, tmp_path / "out")]
    assert got == ["a.png", "notes.txt", "sub/b.jpg"]
    with pytest.raises(ImgexpError, match="input="):
        list_inputs(tmp_path / "missing")
