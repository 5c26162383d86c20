"""The CSV files of a prepare run, written atomically and byte-for-byte reproducibly.

File names that are not valid UTF-8 (a Latin-1 `café.jpg` copied from an old disk) are
written with their original bytes (surrogateescape), the way the file system holds them, so
`read_manifest` gives back a path that opens the same file.
"""

import csv
from collections.abc import Iterable
from pathlib import Path

from imgexp.atomic import atomic_text, write_json_atomic

MANIFEST_COLUMNS = ("path", "label", "split", "sha256", "width", "height")
REJECTED_COLUMNS = ("path", "reason")
DUPLICATE_COLUMNS = ("path", "kept", "kind", "distance", "label", "kept_label")
NOTE_COLUMNS = ("path", "note")




def write_csv_atomic(path: str | Path, columns: Iterable[str], rows: Iterable[Iterable]) -> Path:
    with atomic_text(Path(path)) as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    return Path(path)




def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        return list(csv.DictReader(f))


def write_manifest(run_dir: Path, rows: list[tuple], root: Path, classes: list[str],
                   seed: int, ratios, split_source: str) -> Path:
    """manifest.csv (DESIGN.md contract) + manifest.json; no timestamp, so reruns are equal."""
    manifest = write_csv_atomic(run_dir / "manifest.csv", MANIFEST_COLUMNS, rows)
    meta = {"root": str(root), "classes": classes, "seed": seed, "ratios": list(ratios),
            "split": split_source, "files": len(rows), "created_by": "imgexp-prepare"}
    write_json_atomic(run_dir / "manifest.json", meta)
    return manifest
