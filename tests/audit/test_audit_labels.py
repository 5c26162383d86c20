"""Label checks: out-of-sample k-NN probabilities and confident learning, on clusters with
planted label flips (no images: the features are the clusters)."""

import numpy as np

from imgexp.audit.labels import confident_learning, disagreements, out_of_sample_probabilities


def clusters(seed=0, per_class=40, n_classes=3, flips=6):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, 8)) * 4
    y = np.repeat(np.arange(n_classes), per_class)
    x = centres[y] + rng.normal(size=(len(y), 8))
    flipped = rng.choice(len(y), flips, replace=False)
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + 1) % n_classes
    return x, y, noisy, set(flipped.tolist())


def test_out_of_sample_probabilities_never_let_an_image_vote_for_its_own_label():
    x, y, noisy, flipped = clusters()
    probs = out_of_sample_probabilities(x, noisy, 3, folds=5, k=1, seed=0)
    # with k=1 in-sample, every image would be its own nearest neighbour: p(given) = 1
    assert all(probs[i, noisy[i]] == 0 for i in flipped)


def test_confident_learning_finds_the_flips_and_suggests_the_true_class():
    x, y, noisy, flipped = clusters()
    probs = out_of_sample_probabilities(x, noisy, 3, folds=5, k=10, seed=0)
    issues = confident_learning(probs, noisy)
    assert {i for i, _, _ in issues} == flipped
    assert all(suggested == y[i] for i, suggested, _ in issues)
    scores = [s for _, _, s in issues]
    assert scores == sorted(scores, reverse=True)


def test_per_class_thresholds_spare_a_class_the_model_is_unsure_of():
    """Class 1 is never predicted with confidence (p1 = 0.4 on its own images): "the argmax
    disagrees" flags all of them; confident learning's threshold for class 1 is its own mean
    (0.4), so only the class-0 image that is confidently class 1 is flagged."""
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 0, 0, 0, 1, 1])
    assert [(i, j) for i, j, _ in confident_learning(probs, labels)] == [(3, 1)]
    assert set(disagreements(probs, labels).tolist()) == {3, 4, 5}
