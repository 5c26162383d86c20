"""The prepare stage: scan -> check -> deduplicate -> label and split -> write -> (quarantine,
export). Source files are only read unless prepare.quarantine=move asks otherwise."""

import os
from collections import Counter
from pathlib import Path

from omegaconf import DictConfig

from imgexp.data.class_map import map_labels
from imgexp.data.names import check_class_names
from imgexp.data.splits import SPLITS, SplitLayout, check_split_ratios
from imgexp.errors import ImgexpError
from imgexp.prepare.assign import assign_splits
from imgexp.prepare.checks import CheckOptions, FileCheck, inspect_all
from imgexp.prepare.duplicates import find_duplicates
from imgexp.prepare.quarantine import find_log, quarantine, restore
from imgexp.prepare.report import plot_distribution, print_summary, size_stats, split_counts
from imgexp.prepare.review import DROPPED, apply_review, read_review
from imgexp.prepare.scan import Candidate, Scan, scan_root
from imgexp.prepare.split_export import MODES, ExportItem, export_split
from imgexp.prepare.tables import (
    DUPLICATE_COLUMNS,
    NOTE_COLUMNS,
    REJECTED_COLUMNS,
    write_csv_atomic,
    write_json_atomic,
    write_manifest,
)


def run_prepare(cfg: DictConfig) -> dict:
    p = cfg.prepare
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if p.restore:
        result = restore(find_log(p.restore, Path(cfg.paths.log_dir)))
        print(f"restored {result['restored']} file(s) from the quarantine of {result['log']}")
        return result
    _validate(p)
    root = Path(os.path.abspath(cfg.data.root))
    scan = scan_root(root)
    check_class_names(sorted(set(map_labels(scan.class_names, p.class_map,
                                            "prepare.class_map").values())),
                      f"the class folders of data.root={root}")
    options = CheckOptions(min_size=p.min_size, full_decode=p.full_decode, phash=p.near_dup)
    checks = inspect_all(root, [c.path for c in scan.candidates], options, p.workers,
                         p.progress)
    relabel, review_warnings = {}, []
    if p.review:
        classes = set(map_labels(scan.class_names, p.class_map, "prepare.class_map").values())
        checks, relabel, review_warnings = apply_review(checks, read_review(p.review), classes,
                                                        Path(p.review).name)
    # first, so that it is there to explain a run that finds no usable image
    write_csv_atomic(run_dir / "rejected.csv", REJECTED_COLUMNS,
                     sorted([(c.path, c.reason) for c in checks if not c.ok] + scan.ignored))
    result = _decide(scan, checks, p, relabel)
    result["warnings"] += review_warnings
    if not result["rows"]:
        raise ImgexpError(f"no usable image under {root}: the reasons are in "
                          f"{run_dir / 'rejected.csv'}")
    summary = _write_outputs(run_dir, root, scan, checks, result, p)
    if p.quarantine == "move":
        # an image dropped in review is only left out of the manifest, never moved
        moved = quarantine(root, [(c.path, c.reason) for c in checks
                                  if not c.ok and c.code != DROPPED], run_dir)
        summary["quarantined"] = sum(bool(e.get("moved")) for e in moved["files"])
    if p.export:
        dest = Path(p.export_dir) if p.export_dir else run_dir / "export"
        summary["exported"] = export_split(root, result["export_items"], dest, p.export)
    write_json_atomic(run_dir / "summary.json", summary)
    print_summary(summary, result["counts"], run_dir)
    return summary


def _validate(p: DictConfig) -> None:
    if p.quarantine not in (None, "move"):
        raise ImgexpError(f"prepare.quarantine={p.quarantine!r} is not an option: use move "
                          "(reversible with prepare.restore=true) or null")
    if p.export not in (None, *MODES):
        raise ImgexpError(f"prepare.export={p.export!r} is not an option: use one of "
                          f"{list(MODES)} or null")
    if not 0 <= p.near_dup_radius <= 64:
        raise ImgexpError(f"prepare.near_dup_radius={p.near_dup_radius} must be between 0 and "
                          "64 (bits of the perceptual hash that may differ)")
    if p.workers is not None and p.workers < 1:
        raise ImgexpError(f"prepare.workers={p.workers} must be >= 1 (or null for every core)")
    check_split_ratios(p.ratios, "prepare.ratios")


def _decide(scan: Scan, checks: list[FileCheck], p: DictConfig,
            relabel: dict[str, str] | None = None) -> dict:
    """Labels (after the review's relabels), duplicates and splits for the accepted files."""
    where: dict[str, Candidate] = {c.path: c for c in scan.candidates}
    accepted = [c for c in checks if c.ok]
    label_of_class = map_labels(scan.class_names, p.class_map, "prepare.class_map")
    label_of = {c.path: (relabel or {}).get(c.path, label_of_class[where[c.path].class_name])
                for c in accepted}
    split_rank = {c.path: SPLITS.index(c.split) for c in scan.candidates if c.split}
    duplicates = find_duplicates(accepted, p.keep, p.near_dup_radius if p.near_dup else None,
                                 split_rank)
    kept_of = {d.path: d.kept for d in duplicates}
    listed = {c.path: label_of[c.path] for c in accepted
              if not (p.drop_duplicates and c.path in kept_of)}
    layout = scan.layout if p.keep_existing_split else None
    split_of, warnings = assign_splits(listed, {c.path: c.split for c in scan.candidates},
                                       kept_of, p.ratios, p.seed, layout)
    rows = [(c.path, listed[c.path], split_of[c.path], c.sha256, c.width, c.height)
            for c in accepted if c.path in listed]
    classes = sorted(set(listed.values()))
    empty = sorted(set(label_of_class.values()) - set(classes))
    warnings += [f"class '{c}' has no usable image: it is left out of the class list"
                 for c in empty]
    trained = {label for _, label, split, *_ in rows if split == "train"}
    warnings += [f"class '{c}' has no training image (its split folders lack train/{c}/)"
                 for c in classes if c not in trained]
    if layout is not None and "test" not in layout.folders and "val" in layout.folders:
        warnings.append(f"no test split ({layout.describe().split(':')[0]}): training on this "
                        "manifest reports val metrics only; add a test/ folder or redraw "
                        "with prepare.keep_existing_split=false")
    conflicts = [d for d in duplicates if label_of[d.path] != label_of[d.kept]]
    if conflicts:
        warnings.append(f"{len(conflicts)} duplicate(s) carry a different label than their kept "
                        "copy (see duplicates.csv): check those labels")
    format_of = {c.path: c.format for c in accepted}
    export_items = [ExportItem(path, _inside(where[path]), where[path].class_name, label, split,
                               format_of[path]) for path, label, split, *_ in rows]
    return {"rows": rows, "classes": classes, "empty": empty, "label_of": label_of,
            "duplicates": duplicates, "conflicts": len(conflicts), "warnings": warnings,
            "split": _split_kind(layout),
            "counts": split_counts(rows, classes), "export_items": export_items}


def _split_kind(layout: SplitLayout | None) -> str:
    if layout is None:
        return "stratified"
    if "val" in layout.folders:
        return "existing folders"
    return "existing folders, " + ("val" if "test" in layout.folders else "val and test") + \
        " drawn from train"


def _inside(candidate: Candidate) -> str:
    """The path below its class folder (and split folder)."""
    return "/".join(candidate.path.split("/")[2 if candidate.split else 1:])


def _write_outputs(run_dir: Path, root: Path, scan: Scan, checks: list[FileCheck],
                   result: dict, p: DictConfig) -> dict:
    rows, label_of = result["rows"], result["label_of"]
    write_manifest(run_dir, rows, root, result["classes"], p.seed, p.ratios, result["split"])
    write_csv_atomic(run_dir / "duplicates.csv", DUPLICATE_COLUMNS,
                     [(d.path, d.kept, d.kind, d.distance, label_of[d.path], label_of[d.kept])
                      for d in result["duplicates"]])
    accepted = [c for c in checks if c.ok]
    write_csv_atomic(run_dir / "notes.csv", NOTE_COLUMNS,
                     [(c.path, note) for c in accepted for note in c.notes])
    plot_distribution(result["counts"], run_dir / "class_distribution.png")
    kinds = Counter(d.kind for d in result["duplicates"])
    in_manifest = {r[0] for r in rows}
    described = [c for c in accepted if c.path in in_manifest]
    return {
        "root": str(root), "seed": p.seed, "ratios": list(p.ratios), "split": result["split"],
        "checked": len(checks), "in_manifest": len(rows),
        "rejected": sum(not c.ok for c in checks), "ignored": len(scan.ignored),
        "duplicates": {"total": len(result["duplicates"]), "exact": kinds["exact"],
                       "near": kinds["near"], "label_conflicts": result["conflicts"],
                       "dropped": len(result["duplicates"]) if p.drop_duplicates else 0},
        "classes": {label: {**per_split, "total": sum(per_split.values())}
                    for label, per_split in result["counts"].items()},
        "splits": {s: sum(1 for r in rows if r[2] == s) for s in SPLITS},
        "rejected_by_reason": dict(sorted(Counter(c.code for c in checks if not c.ok).items())),
        "ignored_by_reason": dict(sorted(Counter(why for _, why in scan.ignored).items())),
        "files_with_notes": sum(1 for c in accepted if c.notes),
        "formats": dict(sorted(Counter(c.format for c in described).items())),
        "modes": dict(sorted(Counter(c.mode for c in described).items())),
        "image_size": {"width": size_stats([c.width for c in described]),
                       "height": size_stats([c.height for c in described]),
                       "megapixels": size_stats([c.width * c.height / 1e6 for c in described])},
        "empty_classes": result["empty"], "warnings": result["warnings"],
    }
