"""imgexp-eval's work: score a checkpoint on one split of its data and write metrics.json,
the per-class tables, the confusion matrix, the reliability diagram and the error report into
the run directory."""

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from imgexp.atomic import write_frame_atomic, write_json_atomic, write_text_atomic
from imgexp.data import ImageDataModule
from imgexp.errors import ImgexpError
from imgexp.eval.budget import budget_report
from imgexp.eval.report_html import ErrorRow, write_error_report
from imgexp.metrics.calibration import plot_reliability, reliability_bins
from imgexp.metrics.classification import classification_scores, retrieval_map
from imgexp.metrics.confusion import most_confused, write_confusion_files
from imgexp.metrics.retrieval import knn_search, mmap_at_k, retrieval_metrics
from imgexp.models.data_config import datamodule_for, split_loader
from imgexp.models.error_budget import budget_requested
from imgexp.models.factory import model_from_checkpoint, read_checkpoint
from imgexp.models.inference import Outputs, inference_for, is_classifier, run_model
from imgexp.tracking.run_files import to_number, write_run_info
from imgexp.tracking.run_logging import log_to_run_loggers

log = logging.getLogger(__name__)
# scores that only mean something for probabilities from a softmax
SOFTMAX_ONLY = ("log_loss", "ece")


def image_paths(datamodule: ImageDataModule, split: str, index: np.ndarray) -> list[Path]:
    items = datamodule.datasets[split].items
    return [Path(datamodule.root) / items[i][0] for i in index]


def knn_settings(model, knn: DictConfig) -> tuple[int, bool]:
    """eval.knn's k and weighting; null = the embedding head's own vote (5, weighted)."""
    k = knn.k if knn.k is not None else getattr(model.head, "knn_k", 5)
    weighted = knn.weighted if knn.weighted is not None else getattr(model.head, "knn_weighted",
                                                                     True)
    return int(k), bool(weighted)


def retrieval_scores(model, split: str, queries: Outputs, gallery: Outputs, knn: DictConfig
                     ) -> dict:
    """k-NN accuracy, P@1, R-precision, MAP@R, the CBIR mAP and MMAP@k of the split's images
    against the train images (leave-one-out when the split is train itself)."""
    own = split == "train"
    k, weighted = knn_settings(model, knn)
    scores = retrieval_metrics(queries.embeddings, queries.labels, gallery.embeddings,
                               gallery.labels, vote_k=k, weighted=weighted, exclude_self=own)
    scores["retrieval_map"] = retrieval_map(queries.embeddings, queries.labels,
                                            gallery.embeddings, gallery.labels, exclude_self=own)
    # the depth used: no deeper than the gallery a query is ranked against
    depth = min(int(knn.mmap_k), len(gallery.labels) - int(own))
    scores["mmap_at_k"] = mmap_at_k(queries.embeddings, queries.labels, gallery.embeddings,
                                    gallery.labels, k=depth, exclude_self=own)
    scores["mmap_k"] = depth
    return scores


def error_rows(model, datamodule: ImageDataModule, split: str, queries: Outputs,
               gallery: Outputs | None, cfg: DictConfig) -> list[ErrorRow]:
    """The misclassified images, most confident mistakes first (the most telling ones)."""
    names = model.class_names
    pred = queries.proba.argmax(1)
    wrong = np.flatnonzero(pred != queries.labels)
    wrong = wrong[np.argsort(-queries.proba[wrong, pred[wrong]], kind="stable")]
    wrong = wrong[: cfg.eval.max_errors]
    paths = image_paths(datamodule, split, queries.index[wrong])
    neighbours = [[] for _ in wrong]
    if gallery is not None and len(wrong) and cfg.eval.neighbours > 0:
        sims, idx = knn_search(queries.embeddings[wrong], gallery.embeddings,
                               cfg.eval.neighbours, exclude_self=False)
        gallery_paths = image_paths(datamodule, "train", gallery.index)
        neighbours = [[(gallery_paths[j], names[gallery.labels[j]], float(s))
                       for j, s in zip(row_idx.tolist(), row_sims.tolist(), strict=True)]
                      for row_idx, row_sims in zip(idx, sims, strict=True)]
    top_k = min(cfg.eval.report_top_k, len(names))
    rows = []
    for n, i in enumerate(wrong):
        order = np.argsort(-queries.proba[i])[:top_k]
        rows.append(ErrorRow(paths[n], names[queries.labels[i]], names[pred[i]],
                             float(queries.proba[i, pred[i]]),
                             [(names[c], float(queries.proba[i, c])) for c in order],
                             neighbours[n]))
    return rows


def write_predictions(out_dir: Path, paths: list[Path], queries: Outputs, names: list[str]) -> None:
    pred = queries.proba.argmax(1)
    table = pd.DataFrame({"path": [str(p) for p in paths],
                          "label": [names[i] for i in queries.labels],
                          "predicted": [names[i] for i in pred],
                          "confidence": queries.proba[np.arange(len(pred)), pred]})
    write_text_atomic(out_dir / "predictions.csv", table.to_csv(index=False))


def write_reliability(out_dir: Path, queries: Outputs, n_bins: int, split: str, ece: float
                      ) -> Path:
    """reliability.csv (the bins: they give back `ece`, metrics.json's) and reliability.png."""
    bins = reliability_bins(queries.labels, queries.proba, n_bins)
    write_frame_atomic(bins, out_dir / "reliability.csv")
    return plot_reliability(bins, ece, out_dir / "reliability.png", f"Reliability on {split}")


def evaluate_checkpoint(cfg: DictConfig) -> dict:
    start = time.perf_counter()
    mmap_k = cfg.eval.knn.mmap_k
    if not isinstance(mmap_k, int) or isinstance(mmap_k, bool) or mmap_k < 1:
        raise ImgexpError(f"eval.knn.mmap_k={mmap_k} must be a whole number >= 1 (the depth of "
                          "test/mmap_at_k)")
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = read_checkpoint(cfg.ckpt_path)  # read once: the model and its run's loggers
    model = model_from_checkpoint(ckpt)
    inference = inference_for(model, cfg.device, cfg.inference)
    datamodule = datamodule_for(model, OmegaConf.to_container(cfg.data))
    split, names = cfg.split, model.class_names
    with_retrieval = cfg.eval.retrieval is True or (cfg.eval.retrieval == "auto"
                                                    and not is_classifier(model))
    queries = run_model(model, split_loader(datamodule, split), embeddings=with_retrieval,
                        desc=f"eval {split}", progress=cfg.eval.progress, inference=inference)
    if len(queries.index) == 0:
        raise ImgexpError(f"no readable image in the {split} split of {datamodule.root}")

    scores = classification_scores(queries.labels, queries.proba, tuple(cfg.eval.top_k),
                                   cfg.eval.calibration_bins)
    if not is_classifier(model):
        scores = {k: v for k, v in scores.items() if k not in SOFTMAX_ONLY}
    gallery = None
    if with_retrieval:
        gallery = run_model(model, split_loader(datamodule, "train"), embeddings=True,
                            desc="embed train (gallery)", progress=cfg.eval.progress,
                            inference=inference)
        scores |= retrieval_scores(model, split, queries, gallery, cfg.eval.knn)
    # NaN (e.g. no query class in the gallery) becomes null: metrics.json stays valid JSON
    metrics = {f"{split}/{k}": to_number(v) for k, v in scores.items()}
    figures = [("confusion matrix", "../confusion_matrix.png")]
    if budget_requested(cfg.eval, "eval"):
        budget = budget_report(model, datamodule, split, cfg, out_dir, inference)
        metrics |= {k: to_number(v) for k, v in budget.items() if v is not None}
        figures.append(("risk-coverage curve (eval.max_error)", "../risk_coverage.png"))
    metrics[f"{split}/n_images"] = len(queries.index)
    metrics["data/skipped_images"] = len(queries.skipped)
    write_json_atomic(out_dir / "metrics.json", metrics)

    pred = queries.proba.argmax(1)
    counts = write_confusion_files(out_dir, queries.labels, pred, names, split)
    write_predictions(out_dir, image_paths(datamodule, split, queries.index), queries, names)
    if is_classifier(model):  # calibration means something for softmax probabilities only
        write_reliability(out_dir, queries, cfg.eval.calibration_bins, split, scores["ece"])
        figures.insert(0, (f"reliability diagram (ECE {scores['ece']:.4f})",
                           "../reliability.png"))
    confusions = most_confused(counts, names).head(cfg.eval.summary_pairs)
    errors = error_rows(model, datamodule, split, queries, gallery, cfg)
    write_error_report(out_dir / "errors", errors,
                       list(confusions[["true", "predicted", "count"]].itertuples(index=False)),
                       f"Errors on {split}: {Path(cfg.ckpt_path).name}", len(queries.index),
                       cfg.eval.thumbnail_size, figures)
    if cfg.log_to_run:
        for target in log_to_run_loggers(cfg.ckpt_path, metrics, ckpt["imgexp"]):
            log.info("metrics also logged to %s", target)
    write_run_info(out_dir, model.config.get("seed"), datamodule.manifest_hash(),
                   time.perf_counter() - start,
                   extra={"ckpt_path": str(Path(cfg.ckpt_path).resolve()), "split": split,
                          "skipped": queries.skipped, "inference": inference.fields()})
    return metrics
