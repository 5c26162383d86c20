"""prepare.review: apply a reviewed review.csv (from imgexp-audit) to the next manifest.

Each row's `decision` is empty or `keep` (nothing changes), `drop` (the image leaves the
manifest and is listed in rejected.csv with the reason: nothing is deleted) or
`relabel:<class>` (the image gets that class, one of the data set's classes).
"""

import dataclasses
from pathlib import Path

from imgexp.errors import ImgexpError
from imgexp.prepare.checks import FileCheck
from imgexp.prepare.tables import read_csv

DROPPED = "review"


def read_review(path: str | Path) -> dict[str, str]:
    """path -> decision, for the rows that decide something."""
    path = Path(path)
    if not path.is_file():
        raise ImgexpError(f"prepare.review={path} not found: point at the review.csv of an "
                          "imgexp-audit run, with its decision column filled in")
    rows = read_csv(path)
    if rows and not {"path", "decision"} <= set(rows[0]):
        raise ImgexpError(f"{path} has no path and decision columns: use the review.csv that "
                          "imgexp-audit wrote")
    decisions = {}
    for n, row in enumerate(rows, start=2):
        decision = (row["decision"] or "").strip()
        if decision in ("", "keep"):
            continue
        if decision != "drop" and not (decision.startswith("relabel:") and decision[8:]):
            raise ImgexpError(f"{path} line {n}: decision {decision!r} for {row['path']} is not "
                              "keep, drop or relabel:<class>")
        decisions[row["path"]] = decision
    return decisions


def apply_review(checks: list[FileCheck], decisions: dict[str, str], classes: set[str],
                 source: str) -> tuple[list[FileCheck], dict[str, str], list[str]]:
    """Dropped images become rejections; returns (checks, path -> new label, warnings)."""
    relabel = {p: d[8:] for p, d in decisions.items() if d.startswith("relabel:")}
    unknown = sorted(set(relabel.values()) - classes)
    if unknown:
        raise ImgexpError(f"{source}: relabel to {unknown}, not a class of this data set "
                          f"({sorted(classes)}): fix the decision or add the class folder")
    seen = {c.path for c in checks}
    out = [dataclasses.replace(c, reason=f"dropped in review ({source})", code=DROPPED)
           if c.ok and decisions.get(c.path) == "drop" else c for c in checks]
    missing = sorted(set(decisions) - seen)
    warnings = [f"{len(missing)} reviewed path(s) of {source} are not under the data root "
                f"(first: {missing[0]})"] if missing else []
    return out, relabel, warnings
