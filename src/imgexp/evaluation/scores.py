"""How sure the model is that an image belongs to one of its classes: the score compared with
predict.unknown_threshold (images below it go to _unknown/)."""

import numpy as np
from scipy.special import logsumexp

from imgexp.errors import ImgexpError
from imgexp.evaluation.inference import Outputs

OOD_SCORES = ("softmax", "energy")


def known_class_score(outputs: Outputs, ood: str) -> np.ndarray:
    """softmax: the highest class probability (in [0, 1]); energy: the negative free energy
    logsumexp(logits) of Liu et al. 2020, which separates unseen inputs better but has no fixed
    range, so its threshold must come from the validation split (imgexp-predict
    threshold_for_frr=...)."""
    if ood == "softmax":
        return outputs.proba.max(axis=1)
    if ood == "energy":
        return logsumexp(outputs.logits, axis=1)
    raise ImgexpError(f"predict.ood={ood!r} is not an option: use one of {list(OOD_SCORES)}")


def threshold_for_false_reject_rate(scores: np.ndarray, rate: float) -> float:
    """The threshold below which a fraction `rate` of known-class images (e.g. the validation
    split) would be rejected as unknown."""
    if not 0.0 <= rate < 1.0:
        raise ImgexpError(f"threshold_for_frr={rate} must be in [0, 1): the fraction of "
                          "known-class images you accept to send to _unknown/")
    if len(scores) == 0:
        raise ImgexpError("no scores to choose a threshold from (empty validation split)")
    # the largest observed score with at most `rate` of the scores strictly below it
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    return float(ordered[min(int(np.floor(rate * len(ordered) + 1e-9)), len(ordered) - 1)])
