"""The `_unknown` rule that imgexp-predict and imgexp-app share, so both reject the same
images: one whose known-class score is below `unknown_threshold` gets no class and goes to
`_unknown` (predict's folder, the app's verdict); a threshold of None never rejects."""

import numpy as np

UNKNOWN = "_unknown"


def is_unknown(scores: np.ndarray, threshold: float | None) -> np.ndarray:
    """Per image: True when its score is below the threshold."""
    scores = np.asarray(scores)
    return scores < threshold if threshold is not None else np.zeros(scores.shape, dtype=bool)


def verdict(probabilities: np.ndarray, class_names: list[str], unknown_threshold: float) -> str:
    """The top class unless its probability is below the threshold, then UNKNOWN."""
    best = int(np.argmax(probabilities))
    return UNKNOWN if is_unknown(probabilities[best], unknown_threshold) else class_names[best]
