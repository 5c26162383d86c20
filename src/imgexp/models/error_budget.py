"""The error budget (predict.max_error / eval.max_error) on a checkpoint: score labelled
calibration images (the run's val split or a folder of class sub-folders), pick the score and
the threshold (imgexp.metrics.selective_risk), and measure what was promised on labelled
images that were not used to calibrate."""

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from imgexp.data.dataset import ImageDataset, collate_skipping
from imgexp.data.splits import scan_class_folders
from imgexp.errors import ImgexpError
from imgexp.metrics.selective_risk import BudgetResult, check_budget, threshold_for_error_budget
from imgexp.models.data_config import datamodule_for, input_size, split_loader
from imgexp.models.inference import Outputs, run_model
from imgexp.models.scores import known_class_score, resolve_ood


@dataclass
class Calibrated:
    score: str                 # the known-class score the threshold applies to
    result: BudgetResult
    calibration: str           # where the calibration images came from
    compared: dict[str, dict]  # with score=auto: every score's coverage and bound

    def fields(self) -> dict:
        """summary.json / budget.json's record (JSON-safe: no infinite threshold)."""
        r = self.result
        return {"max_error": r.max_error, "confidence": r.confidence, "met": r.met,
                "score": self.score, "threshold": r.threshold if r.met else None,
                "bound": r.bound, "calibration": self.calibration,
                "n_calibration": r.n_calibration, "calibration_error": r.calibration_error,
                "expected_unknown_share": 1.0 - r.coverage, "scores_compared": self.compared}

def describe(fields: dict, key: str) -> str:
    """One line for people from Calibrated.fields()."""
    f = fields
    if not f["met"]:
        return (f"{key}.max_error={f['max_error']:g} cannot be met: the best error these "
                f"{f['n_calibration']} calibration images certify at confidence "
                f"{f['confidence']:g} is {f['bound']:.1%} ({key}.max_error={f['bound']:g})"
                + ("; nothing was sorted into class folders, all went to _unknown/"
                   if key == "predict" else ""))
    return (f"error budget: at most {f['max_error']:.1%} wrong among sorted images with "
            f"confidence {f['confidence']:g} (score_{f['score']} >= {f['threshold']:.6g}; "
            f"expected {f['expected_unknown_share']:.1%} to _unknown/; calibrated on "
            f"{f['n_calibration']} images)")


def budget_scores(model, ood: str, score: str | None, key: str) -> list[str]:
    """The scores to calibrate: predict.ood's, or (score=auto) every one the head offers."""
    if score is None:
        return [resolve_ood(model, ood)]
    if score != "auto":
        raise ImgexpError(f"{key}.score={score!r} is not an option: null (the score {key}.ood "
                          "names) or auto (the one sorting the most images within the budget)")
    offered = []
    for name in ("softmax", "energy", "nearest"):
        try:
            offered.append(resolve_ood(model, name))
        except ImgexpError:
            continue  # this head cannot give that score
    return offered


def score_all(model, loader: DataLoader, names: list[str], desc: str, progress: bool,
              inference=None) -> tuple[Outputs, dict[str, np.ndarray]]:
    """One pass over `loader`, every score in `names`."""
    outputs = run_model(model, loader, logits="energy" in names, embeddings="nearest" in names,
                        desc=desc, progress=progress, inference=inference)
    gallery = model.gallery_embeddings.cpu() if "nearest" in names else None
    return outputs, {n: known_class_score(outputs, n, gallery) for n in names}


def calibration_loader(model, calibration: str | None, data: dict, key: str
                       ) -> tuple[DataLoader, str]:
    """The checkpoint's val split (data overrides as in eval), or every image of a folder of
    class sub-folders named like the checkpoint's classes."""
    if calibration is None:
        datamodule = datamodule_for(model, data)
        return split_loader(datamodule, "val"), f"val split of {datamodule.root or 'the run'}"
    root = Path(calibration).expanduser()
    if not root.is_dir() or not any(d.is_dir() for d in root.iterdir()):
        raise ImgexpError(f"{key}.calibration={calibration} is not a folder of class "
                          "sub-folders: point it at labelled images (DIR/<class>/<image>)")
    samples = scan_class_folders(root)
    names = model.class_names
    foreign = sorted({s.label for s in samples} - set(names))
    if foreign:
        raise ImgexpError(f"{key}.calibration={calibration} has folders {foreign} that are not "
                          f"classes of the checkpoint ({names}): remove or rename them")
    items = [(s.path, names.index(s.label)) for s in samples]
    dataset = ImageDataset(root, items, input_size(model))
    return DataLoader(dataset, batch_size=32, shuffle=False, collate_fn=collate_skipping), str(root)


def correct_of(outputs: Outputs) -> np.ndarray:
    return outputs.proba.argmax(1) == outputs.labels


def calibrate(outputs: Outputs, scores: dict[str, np.ndarray], max_error: float,
              confidence: float, calibration: str) -> Calibrated:
    """The score sorting the most images within the budget. Comparing K scores is K chances
    to be lucky, so each is certified at confidence 1 - (1 - confidence) / K (Bonferroni)."""
    if len(outputs.index) == 0:
        raise ImgexpError(f"no readable calibration image in {calibration}")
    level = 1 - (1 - confidence) / len(scores)
    correct = correct_of(outputs)
    results = {n: replace(threshold_for_error_budget(s, correct, max_error, level),
                          confidence=confidence) for n, s in scores.items()}
    met = [n for n in results if results[n].met]
    best = (max(met, key=lambda n: results[n].coverage) if met
            else min(results, key=lambda n: results[n].bound))
    compared = ({n: {"met": r.met, "coverage": r.coverage, "bound": r.bound}
                 for n, r in results.items()} if len(results) > 1 else {})
    return Calibrated(best, results[best], calibration, compared)


def realised(accepted: np.ndarray, correct: np.ndarray) -> dict:
    """Error among the accepted labelled images and the share accepted."""
    n = int(accepted.sum())
    return {"realised_error": float((~correct[accepted]).mean()) if n else None,
            "realised_coverage": float(accepted.mean()) if len(accepted) else None,
            "n_labelled": len(accepted)}


def input_labels(paths: list[str], root: str | Path, names: list[str]) -> np.ndarray | None:
    """Class indices when every input file sits in a sub-folder named like a class, else None."""
    root = Path(root).expanduser()
    labels = []
    for path in paths:
        parts = Path(path).relative_to(root).parts if root.is_dir() else ()
        if len(parts) < 2 or parts[0] not in names:
            return None
        labels.append(names.index(parts[0]))
    return np.array(labels, dtype=np.int64)


def budget_requested(section, key: str) -> bool:
    """Whether `key`.max_error is set; the budget's other options alone would do nothing."""
    if section.max_error is None:
        for name in ("calibration", "score"):
            if section.get(name) is not None:
                raise ImgexpError(f"{key}.{name} only applies with an error budget: also set "
                                  f"{key}.max_error (e.g. {key}.max_error=0.05)")
    return section.max_error is not None


def calibrate_checkpoint(model, cfg_section, data: dict, key: str, progress: bool,
                         inference=None) -> Calibrated:
    """predict/eval's entry: check the options, score the calibration images, calibrate."""
    check_budget(cfg_section.max_error, cfg_section.confidence, key)
    names = budget_scores(model, cfg_section.ood, cfg_section.score, key)
    loader, source = calibration_loader(model, cfg_section.get("calibration"), data, key)
    outputs, scores = score_all(model, loader, names, "score calibration", progress, inference)
    return calibrate(outputs, scores, cfg_section.max_error, cfg_section.confidence, source)
