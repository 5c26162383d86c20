"""The audit stage: list the images (the data module's view: folder, manifest, digits, split
folders) -> read each once (pixels, cached by content) -> near-duplicates and leaks -> quality
-> label issues -> correlations -> the run directory's CSVs, summary, review sheet and report.
The source is only read."""

import logging
import time
from collections import Counter
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from imgexp.atomic import write_json_atomic
from imgexp.audit import labels as label_checks
from imgexp.audit.correlations import shortcut_table
from imgexp.audit.neighbours import candidate_pairs, nearest, verify
from imgexp.audit.pixels import (
    align_pictures,
    describe_all,
    label_vectors,
    search_vectors,
    why_unreadable,
)
from imgexp.audit.quality import quality_issues
from imgexp.audit.report import write_report, write_tables
from imgexp.data.splits import Sample
from imgexp.errors import ImgexpError
from imgexp.features.cache import hash_files

log = logging.getLogger(__name__)


def list_samples(data_cfg: DictConfig) -> tuple[Path, list[str], list[Sample]]:
    datamodule = instantiate(data_cfg, _recursive_=False)
    datamodule.require_readable_classes = False  # unreadable files are a finding, not fatal
    datamodule.resolve()
    return Path(datamodule.root), list(datamodule.classes), list(datamodule.samples)


def check_keys(a: DictConfig) -> None:
    """Numbers out of range are refused before any work (sklearn would raise a traceback)."""
    for key, low in (("label_neighbours", 1), ("label_folds", 2), ("near_dup_candidates", 1),
                     ("large_above", 0), ("threads", 1)):
        if not isinstance(a[key], int) or a[key] < low:
            raise ImgexpError(f"audit.{key}={a[key]} must be a whole number >= {low}")


def run_audit(cfg: DictConfig) -> dict:
    start = time.perf_counter()
    a = cfg.audit
    check_keys(a)
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    root, classes, samples = list_samples(cfg.data)
    if not samples:
        raise ImgexpError(f"no image under {root}: nothing to audit")
    paths = [root / s.path for s in samples]
    hashes = hash_files(paths)
    rows = describe_all(paths, hashes, Path(a.cache_dir) if a.cache_dir else None, a.threads)
    readable = ~np.isnan(rows[:, 0])
    unreadable = [(s.path, why_unreadable(path))
                  for s, path, ok in zip(samples, paths, readable, strict=True) if not ok]
    if not readable.any():
        raise ImgexpError(f"none of the {len(samples)} images under {root} decodes: the files "
                          "are listed in unreadable.csv of imgexp-prepare data.root=...")
    idx = np.flatnonzero(readable)
    kept = [samples[i] for i in idx]
    rows, sha = rows[idx], [hashes[i] for i in idx]

    pairs, search = near_duplicates(rows, sha, a)
    issues = quality_issues(rows, a.quality)
    labels = label_issues(cfg, root, classes, kept, rows)
    shortcuts = shortcut_table(rows, kept, classes, a.correlation_margin, cfg.seed)
    tables = write_tables(run_dir, kept, classes, pairs, issues, labels, shortcuts, unreadable)
    summary = {
        "root": str(root), "images": len(samples), "audited": len(kept),
        "unreadable": len(unreadable), "classes": dict(Counter(s.label for s in kept)),
        "splits": dict(Counter(s.split for s in kept)),
        "near_duplicates": {"pairs": len(pairs),
                            "exact": sum(p["kind"] == "exact" for p in pairs),
                            "near": sum(p["kind"] == "near" for p in pairs),
                            "groups": len({p["group"] for p in pairs}),
                            "threshold": a.near_dup_threshold, "search": search},
        "leaks": tables["leaks"],
        "quality": dict(Counter(issue for _, issue, _ in issues)),
        "label_issues": labels["summary"],
        "shortcuts": [r["property"] for r in shortcuts if r["shortcut"]],
        "review_rows": tables["review"],
        "wall_time_s": round(time.perf_counter() - start, 2),
    }
    write_json_atomic(run_dir / "summary.json", summary)
    write_report(run_dir, root, kept, summary, a.report_thumbnails)
    _print(summary, run_dir)
    return summary


def choose(key: str, value: str, options: tuple[str, str], n: int, above: int) -> str:
    """`auto` takes the cheap option (second) for more than `above` images."""
    if value == "auto":
        return options[1] if n > above else options[0]
    if value not in options:
        raise ImgexpError(f"audit.{key}={value} is not one of auto, {', '.join(options)}: fix "
                          f"audit.{key} (auto picks {options[1]} above audit.large_above images)")
    return value


def near_duplicates(rows: np.ndarray, sha: list[str], a: DictConfig) -> tuple[list[dict], str]:
    """Exact copies (same sha256) and confirmed near copies, with a group per chain; and the
    neighbour search used (exact | index)."""
    by_sha: dict[str, list[int]] = {}
    for i, h in enumerate(sha):
        by_sha.setdefault(h, []).append(i)
    exact = [(m[0], j) for m in by_sha.values() for j in m[1:]]
    search = choose("near_dup_search", a.near_dup_search, ("exact", "index"), len(rows),
                    a.large_above)
    candidates = candidate_pairs(search_vectors(rows), a.near_dup_candidates,
                                 a.near_dup_min_cosine, search)
    candidates = np.array([(i, j) for i, j in candidates.tolist() if sha[i] != sha[j]],
                          dtype=np.int64).reshape(-1, 2)
    distances = verify(candidates, align_pictures(rows))
    near = [(int(i), int(j), float(d)) for (i, j), d in zip(candidates, distances, strict=True)
            if d <= a.near_dup_threshold]
    found = [(i, j, 0.0, "exact") for i, j in exact] + [(i, j, d, "near") for i, j, d in near]
    if not found:
        return [], search
    edges = np.array([(i, j) for i, j, *_ in found])
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])),
                       shape=(len(rows), len(rows)))
    _, component = connected_components(graph, directed=False)
    # groups numbered in order of first appearance, so the numbers are stable across runs
    number: dict[int, int] = {}
    out = []
    for i, j, d, kind in sorted(found, key=lambda t: (min(t[0], t[1]), t[0], t[1])):
        group = number.setdefault(int(component[i]), len(number) + 1)
        out.append({"i": i, "j": j, "distance": round(d, 5), "kind": kind, "group": group})
    return out, search


def label_issues(cfg: DictConfig, root: Path, classes: list[str], samples: list[Sample],
                 rows: np.ndarray) -> dict:
    a = cfg.audit
    counts = Counter(s.label for s in samples)
    # an image alone in its class has no neighbour of its class in another fold: it would be
    # flagged whatever it shows, so it is left out of the checks, with a note
    alone = sorted(c for c, n in counts.items() if n < 2)
    checked = np.array([i for i, s in enumerate(samples) if s.label not in alone], dtype=int)
    extra = {"note": f"not checked: the single image of class(es) {alone}"} if alone else {}
    if len(counts) - len(alone) < 2:
        note = (f"skipped: {len(counts) - len(alone)} class(es) with two images or more — "
                "label checks need at least two")
        log.warning("label checks %s", note)
        return {"issues": [], "summary": {"check": None, "note": note}}
    samples, rows = [samples[i] for i in checked], rows[checked]
    if a.ckpt_path:
        features, extra["precision"] = _checkpoint_features(a, root, classes, samples)
        source = "checkpoint"
    else:
        features, source = label_vectors(rows), "HOG of 32x32 grey + 16x16 grey pixels"
    index = {c: k for k, c in enumerate(classes)}
    y = np.array([index[s.label] for s in samples])
    method = choose("label_method", a.label_method, ("kfold", "index"), len(y), a.large_above)
    if method == "kfold":
        probs = label_checks.out_of_sample_probabilities(features, y, len(classes),
                                                         a.label_folds, a.label_neighbours,
                                                         cfg.seed)
        how = f"out-of-fold {a.label_neighbours}-NN probabilities ({a.label_folds} folds"
    else:
        neighbours, distances = nearest(features, a.label_neighbours, "index", cfg.seed)
        probs = label_checks.neighbour_probabilities(neighbours, distances, y, len(classes))
        how = (f"leave-one-out {a.label_neighbours}-NN probabilities (faiss index, "
               f"{len(y)} images > audit.large_above")
    issues = [(int(checked[i]), j, score)
              for i, j, score in label_checks.confident_learning(probs, y)]
    check = f"confident learning on {how}, features: {source})"
    return {"issues": issues,
            "summary": {"check": check, "method": method, "flagged": len(issues),
                        "model_disagrees": int(len(label_checks.disagreements(probs, y))),
                        **extra}}


def _checkpoint_features(a: DictConfig, root: Path, classes: list[str],
                         samples: list[Sample]) -> tuple[np.ndarray, str]:
    """The checkpoint's embeddings of `samples`, and the precision they were computed in."""
    from imgexp.features.extractor import FeatureExtractor, extract_features
    from imgexp.models.factory import read_checkpoint

    trained = read_checkpoint(a.ckpt_path)["imgexp"]["class_names"]
    unknown = sorted(set(classes) - set(trained))
    if unknown:
        raise ImgexpError(f"audit.ckpt_path={a.ckpt_path} was trained on classes {trained}, "
                          f"not on {unknown}: use a checkpoint of these classes, or none "
                          "(audit.ckpt_path=null: pixel features)")
    extractor = FeatureExtractor.from_checkpoint(a.ckpt_path, mode="embed", device=a.device)
    features, stats = extract_features([root / s.path for s in samples], extractor,
                                       cache_dir=a.cache_dir, progress=False)
    return np.nan_to_num(features), stats["precision"]


def _print(summary: dict, run_dir: Path) -> None:
    s = summary
    labels = s["label_issues"]
    print(f"audited {s['audited']} of {s['images']} images ({s['unreadable']} unreadable): "
          f"{s['near_duplicates']['pairs']} near-duplicate pair(s), {s['leaks']} across "
          f"splits, {sum(s['quality'].values())} quality issue(s), "
          + (f"{labels['flagged']} likely label error(s)" if labels["check"]
             else f"label checks {labels['note']}"))
    print(f"report: {run_dir / 'report.html'}")
