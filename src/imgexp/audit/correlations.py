"""Image properties that predict the label: shortcuts a model will learn instead of the content
(every "photo" a JPEG and every "drawing" a PNG, one class shot with another camera...).
The EXIF camera (make and model) is a code per camera, 0 for none (`pixels.camera_code`).

Each property alone feeds a depth-3 decision tree, scored by cross-validated balanced accuracy;
chance is 1 / number of classes. A property scoring `margin` or more above chance is a shortcut.
"""

import warnings

import numpy as np
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.tree import DecisionTreeClassifier

from imgexp.audit.pixels import stat
from imgexp.data.splits import Sample


def properties(rows: np.ndarray) -> dict[str, np.ndarray]:
    w, h = stat(rows, "width"), stat(rows, "height")
    return {"width": w, "height": h, "aspect": w / np.maximum(h, 1),
            "brightness": stat(rows, "brightness"), "grayscale": stat(rows, "grayscale"),
            "file_format": stat(rows, "format"), "exif_camera": stat(rows, "camera")}


def shortcut_table(rows: np.ndarray, samples: list[Sample], classes: list[str],
                   margin: float, seed: int) -> list[dict]:
    y = np.array([classes.index(s.label) for s in samples])
    counts = np.bincount(y)
    if (counts > 0).sum() < 2 or counts.max() < 2:
        return []
    chance = 1 / (counts > 0).sum()
    folds = StratifiedKFold(n_splits=int(min(5, counts.max())), shuffle=True, random_state=seed)
    out = []
    for name, values in properties(rows).items():
        with warnings.catch_warnings():  # tiny classes: sklearn warns, the score still counts
            warnings.simplefilter("ignore")
            predicted = cross_val_predict(DecisionTreeClassifier(max_depth=3, random_state=seed),
                                          values.reshape(-1, 1), y, cv=folds)
            score = balanced_accuracy_score(y, predicted)
        out.append({"property": name, "balanced_accuracy": round(float(score), 4),
                    "chance": round(chance, 4), "shortcut": bool(score >= chance + margin)})
    return sorted(out, key=lambda r: -r["balanced_accuracy"])
