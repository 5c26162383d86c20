"""imgexp-predict's work: classify every file under an input folder in batches, write
predictions.csv, sort the images into output/<class>/ (or _unknown/ when the model is not sure)
and list the files that could not be read in rejected.csv."""

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from imgexp.atomic import write_json_atomic, write_text_atomic
from imgexp.data.dataset import ImageFiles, collate_skipping
from imgexp.data.splits import image_files
from imgexp.errors import ImgexpError
from imgexp.folder_lock import LOCK_NAME, hold_folder
from imgexp.models.data_config import datamodule_for, input_size, split_loader
from imgexp.models.error_budget import (
    budget_requested,
    calibrate_checkpoint,
    input_labels,
    realised,
)
from imgexp.models.inference import Outputs, load_for_inference, run_model
from imgexp.models.onnx_model import OnnxClassifier
from imgexp.models.scores import (
    known_class_score,
    resolve_ood,
    threshold_for_false_reject_rate,
)
from imgexp.predict.sorting import (
    INCOMPLETE,
    begin_output,
    check_mode,
    check_unfinished,
    finish_output,
    place,
)
from imgexp.unknown import UNKNOWN, is_unknown

log = logging.getLogger(__name__)



def list_inputs(input_path: str | Path, exclude: Path | None = None) -> list[Path]:
    """Every visible file under `input_path` (or that file); whether it decodes is found out
    later, so an image with an unusual extension is still tried."""
    root = Path(input_path).expanduser()
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise ImgexpError(f"input={input_path} is neither a folder nor a file: "
                          "pass input=/path/to/images")
    exclude = exclude.resolve() if exclude else None
    files = []
    for path in image_files(root, any_extension=True):
        if exclude and path.resolve().is_relative_to(exclude):
            continue  # output inside input: a second run must not re-sort its own results
        files.append(path)
    return files


def score_outputs(model, loader: DataLoader, ood: str, desc: str, progress: bool = True,
                  inference=None) -> tuple[Outputs, np.ndarray]:
    """Predictions and known-class scores (`ood` already resolved) of every image."""
    outputs = run_model(model, loader, logits=ood == "energy", embeddings=ood == "nearest",
                        desc=desc, progress=progress, inference=inference)
    gallery = model.gallery_embeddings.cpu() if ood == "nearest" else None
    return outputs, known_class_score(outputs, ood, gallery)


def file_loader(model, paths: list[Path], batch_size: int | None, num_workers: int,
                on_gpu: bool = False) -> DataLoader:
    """batch_size None: 16 on CPU, where larger batches of activations fall out of the cache
    and get slower per image (measured in benchmarks/bench_predict.py), 128 on a GPU.
    Decoding workers only pay off beyond a few batches: their start-up costs about a second."""
    batch_size = batch_size or (128 if on_gpu else 16)
    if len(paths) <= 4 * batch_size:
        num_workers = 0
    dataset = ImageFiles(paths, input_size(model))
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=collate_skipping, pin_memory=on_gpu)


def rejected_table(paths: list[Path], outputs: Outputs) -> pd.DataFrame:
    """The inputs that gave no prediction, with the decoder's reason."""
    done = set(outputs.index.tolist())
    rows = []
    for i in (i for i in range(len(paths)) if i not in done):
        prefix = f"{paths[i]}: "
        reason = next((e[len(prefix):] for e in outputs.skipped if e.startswith(prefix)),
                      "unreadable")
        rows.append((str(paths[i]), reason))
    return pd.DataFrame(rows, columns=["path", "reason"])


@dataclass
class PredictSettings:
    mode: str
    unknown_threshold: float | None
    ood: str
    top_k: int


def predictions_table(paths: list[Path], outputs: Outputs, score: np.ndarray, names: list[str],
                      s: PredictSettings) -> pd.DataFrame:
    proba = outputs.proba
    pred = proba.argmax(1)
    unknown = is_unknown(score, s.unknown_threshold)
    table = pd.DataFrame({
        "path": [str(paths[i]) for i in outputs.index],
        "predicted": [names[c] for c in pred],
        "confidence": proba[np.arange(len(pred)), pred],
        f"score_{s.ood}": score,
        "unknown": unknown,
    })
    order = np.argsort(-proba, axis=1, kind="stable")[:, : min(s.top_k, len(names))]
    for k in range(order.shape[1]):
        table[f"top{k + 1}_class"] = [names[c] for c in order[:, k]]
        table[f"top{k + 1}_score"] = proba[np.arange(len(pred)), order[:, k]]
    return table


def check_batch_size(batch_size) -> None:
    """null picks the device's default; 0 once picked it too, without a word."""
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(
            batch_size, int) or batch_size < 1):
        raise ImgexpError(f"predict.batch_size={batch_size!r} is not a whole number >= 1: give "
                          "one, or null for the device's default (16 on CPU, 128 on a GPU)")


# what predict writes into output= besides the class folders: a class folder by one of these
# names would take its place (or be taken by it)
OWN_NAMES = {UNKNOWN: "the folder for images the model is not sure of",
             "predictions.csv": "predict's table", "rejected.csv": "predict's list of unread files",
             "summary.json": "predict's summary", INCOMPLETE: "predict's unfinished-run marker",
             LOCK_NAME: "the output folder's lock"}


def check_output_names(names: list[str]) -> None:
    for name in names:
        if name in OWN_NAMES:
            raise ImgexpError(f"the model has a class named {name!r}, the name of "
                              f"{OWN_NAMES[name]} in output=: rename that class and retrain")


def predict_folder(cfg: DictConfig) -> dict:
    check_batch_size(cfg.predict.batch_size)
    settings = PredictSettings(cfg.predict.mode, cfg.predict.unknown_threshold, cfg.predict.ood,
                               cfg.predict.top_k)
    check_mode(settings.mode)
    output = Path(cfg.output).expanduser()
    model, inference = load_for_inference(cfg.ckpt_path, cfg.device, cfg.inference)
    names = model.class_names
    check_output_names(names)
    # after the model's class names are checked: a refused model leaves no output folder
    hold_folder(output, "output")  # a second predict into it would sort every image twice
    check_unfinished(output)
    if (output / "predictions.csv").exists():
        raise ImgexpError(f"{output} already holds predictions.csv from an earlier run: "
                          "choose a new output= folder")
    settings.ood = resolve_ood(model, settings.ood)
    budget = None
    if budget_requested(cfg.predict, "predict"):  # the budget sets the score and the threshold
        budget = calibrate_checkpoint(model, cfg.predict, OmegaConf.to_container(cfg.data),
                                      "predict", cfg.predict.progress, inference)
        # not met: an infinite threshold sends every image to _unknown/
        settings.ood, settings.unknown_threshold = budget.score, budget.result.threshold
    start = time.perf_counter()  # images/s: from listing the input to the sorted folders
    paths = list_inputs(cfg.input, exclude=output)
    if not paths:
        raise ImgexpError(f"input={cfg.input} holds no files")
    loader = file_loader(model, paths, cfg.predict.batch_size, cfg.predict.num_workers,
                         inference.device.type == "cuda")
    outputs, score = score_outputs(model, loader, settings.ood, "predict",
                                   cfg.predict.progress, inference)
    table = predictions_table(paths, outputs, score, names, settings)
    rejected = rejected_table(paths, outputs)
    begin_output(output, [*names, UNKNOWN])
    destinations = []
    for path, label, unknown in zip(table["path"], table["predicted"], table["unknown"],
                                    strict=True):
        dest = place(Path(path), output, UNKNOWN if unknown else label, settings.mode)
        destinations.append(str(dest.relative_to(output)) if dest else "")
    table["destination"] = destinations
    write_text_atomic(output / "predictions.csv", table.to_csv(index=False))
    write_text_atomic(output / "rejected.csv", rejected.to_csv(index=False))
    counts = table.loc[~table["unknown"], "predicted"].value_counts().to_dict()
    seconds = time.perf_counter() - start
    summary = {"output": str(output), "n_inputs": len(paths), "n_predicted": len(table),
               "n_unknown": int(table["unknown"].sum()), "n_rejected": len(rejected),
               "per_class": counts, "seconds": round(seconds, 3),
               "images_per_s": round(len(paths) / seconds, 2), **inference.fields(),
               "runtime": "onnxruntime" if isinstance(model, OnnxClassifier) else "torch"}
    if budget is not None:
        summary["error_budget"] = budget.fields()
        labels = input_labels(table["path"].tolist(), cfg.input, names)
        if labels is not None:  # input in class sub-folders: what was promised, measured
            correct = labels == outputs.proba.argmax(1)
            summary["error_budget"] |= realised(~table["unknown"].to_numpy(), correct)
    write_json_atomic(output / "summary.json", summary)
    finish_output(output)
    return summary


def validation_threshold(cfg: DictConfig) -> dict:
    """The unknown_threshold rejecting at most `cfg.threshold_for_frr` of the validation
    images; also the score used, how many were scored and the fraction actually rejected."""
    model, inference = load_for_inference(cfg.ckpt_path, cfg.device, cfg.inference)
    ood = resolve_ood(model, cfg.predict.ood)
    datamodule = datamodule_for(model, OmegaConf.to_container(cfg.data))
    _, scores = score_outputs(model, split_loader(datamodule, "val"), ood, "score val",
                              cfg.predict.progress, inference)
    threshold = threshold_for_false_reject_rate(scores, cfg.threshold_for_frr)
    return {"threshold": threshold, "ood": ood, "n_images": len(scores),
            "rejected": float((scores < threshold).mean())}
