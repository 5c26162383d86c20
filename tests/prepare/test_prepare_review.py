"""prepare.review: the decisions of an audit's review.csv shape the next manifest; nothing is
deleted or moved, a dropped image is in rejected.csv with the reason."""

import pytest

from helpers.prepare import make_classes, run_prepare_on
from imgexp.errors import ImgexpError


def write_review(path, rows):
    path.write_text("path,label,split,findings,decision\n"
                    + "".join(f"{p},x,train,near duplicate,{d}\n" for p, d in rows))
    return path


def test_drop_and_relabel_decisions_reach_the_manifest(tmp_path):
    make_classes(tmp_path / "src", {"a": 4, "b": 4})
    review = write_review(tmp_path / "review.csv", [
        ("a/a_00.png", "drop"), ("b/b_01.png", "relabel:a"), ("a/a_02.png", "keep"),
        ("a/a_03.png", "")])
    out = run_prepare_on(tmp_path / "src", tmp_path / "run", f"prepare.review={review}",
                         "prepare.quarantine=move")  # a dropped image is not moved either
    listed = {r["path"]: r["label"] for r in out.manifest}
    assert "a/a_00.png" not in listed and out.rejected["a/a_00.png"].startswith(
        "dropped in review (review.csv)")
    assert listed["b/b_01.png"] == "a" and listed["a/a_02.png"] == listed["a/a_03.png"] == "a"
    assert len(listed) == 7 and out.summary["rejected_by_reason"] == {"review": 1}


@pytest.mark.parametrize(("decision", "message"), [
    ("delete", "is not keep, drop or relabel:<class>"),
    ("relabel:zebra", r"relabel to \['zebra'\], not a class"),
])
def test_a_bad_decision_is_one_clear_error(tmp_path, decision, message):
    make_classes(tmp_path / "src", {"a": 2, "b": 2})
    review = write_review(tmp_path / "review.csv", [("a/a_00.png", decision)])
    with pytest.raises(ImgexpError, match=message):
        run_prepare_on(tmp_path / "src", tmp_path / "run", f"prepare.review={review}")
