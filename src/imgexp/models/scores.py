"""How sure the model is that an image belongs to one of its classes: the score compared with
predict.unknown_threshold (images below it go to _unknown/). Higher always means "known"."""

import numpy as np
from scipy.special import logsumexp

from imgexp.errors import ImgexpError
from imgexp.metrics.retrieval import knn_search
from imgexp.models.inference import Outputs, is_classifier

OOD_SCORES = ("auto", "softmax", "energy", "nearest")


def resolve_ood(model, ood: str) -> str:
    """auto = softmax for a softmax head, nearest for an embedding head; refuse what the head
    cannot give (class logits for energy, a gallery for nearest)."""
    if ood not in OOD_SCORES:
        raise ImgexpError(f"predict.ood={ood!r} is not an option: use one of {list(OOD_SCORES)}")
    if ood == "auto":
        return "softmax" if is_classifier(model) else "nearest"
    if ood == "energy" and not is_classifier(model):
        raise ImgexpError("predict.ood=energy needs class logits (a softmax head); this "
                          "checkpoint has an embedding head: use predict.ood=nearest or softmax")
    if ood == "nearest" and len(getattr(model, "gallery_embeddings", ())) == 0:
        raise ImgexpError("predict.ood=nearest needs the gallery of an embedding model; this "
                          "checkpoint has none: use predict.ood=softmax or energy")
    return ood


def known_class_score(outputs: Outputs, ood: str, gallery=None) -> np.ndarray:
    """softmax: the highest class probability (in [0, 1]); energy: the negative free energy
    logsumexp(logits) of Liu et al. 2020, which separates unseen inputs better; nearest: the
    cosine similarity to the closest gallery (train) image, i.e. the distance to the nearest
    class of an embedding model. energy and nearest have no fixed scale: take their threshold
    from the validation split (imgexp-predict threshold_for_frr=...)."""
    if ood == "softmax":
        return outputs.proba.max(axis=1)
    if ood == "energy":
        return logsumexp(outputs.logits, axis=1)
    if ood == "nearest":
        similarity, _ = knn_search(outputs.embeddings, gallery, 1)
        return similarity[:, 0].numpy()
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
