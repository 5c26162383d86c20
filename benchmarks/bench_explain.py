"""The k-means scan of imgexp-explain (explain.k=auto: k = 2..15 per layer, inertia and
silhouette) with scikit-learn pinned to one thread, versus the same scan with scikit-learn's
default threading, in one process run.

Activations: the default layers (3 conv blocks, neck, head) of a simple_cnn (initial weights,
64 px) over the sign-language digits photos when present, else the built-in digits.
"""

import sys

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

from benchmarks.common import median_time, real_photos_or_digits
from imgexp.data.splits import scan_class_folders
from imgexp.explain.activations import collect, default_layers
from imgexp.explain.clustering import SILHOUETTE_SAMPLE, cluster_layer
from imgexp.explain.inputs import ImageSet, decode_images, stratified_sample

K_MAX = 15


def activations(n_images: int) -> dict[str, np.ndarray]:
    from hydra import compose, initialize_config_dir

    from imgexp.models import build_model
    from imgexp.paths import CONFIG_DIR

    root, _ = real_photos_or_digits()
    samples = scan_class_folders(root)
    classes = sorted({s.label for s in samples})
    labels = np.array([classes.index(s.label) for s in samples])
    chosen = stratified_sample(labels, n_images, seed=0)
    images, kept = decode_images([root / samples[i].path for i in chosen], 64)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["data.image_size=64", "paths.output_dir=unused"])
    model = build_model(cfg, classes).eval()
    image_set = ImageSet(images, [str(i) for i in kept], labels[chosen][kept])
    acts, _ = collect(model, image_set.batches(64), default_layers(model))
    return acts


def baseline_scan(x: np.ndarray) -> int:
    """The same scan as cluster_layer(k='auto'), scikit-learn left to its own threads."""
    x = StandardScaler().fit_transform(x)
    scores = {}
    for k in range(2, K_MAX + 1):
        fit = KMeans(n_clusters=k, n_init=4, random_state=0).fit(x)
        scores[k] = silhouette_score(x, fit.labels_, sample_size=min(SILHOUETTE_SAMPLE, len(x)),
                                     random_state=0)
    return max(scores, key=scores.get)


def run(quick: bool = False) -> dict:
    repeats = 1 if quick else 3
    acts = activations(200 if quick else 1000)
    n = len(next(iter(acts.values())))
    project = median_time(lambda: [cluster_layer(name, x, "auto", K_MAX, "silhouette", 0)
                             for name, x in acts.items()], repeats)
    baseline = median_time(lambda: [baseline_scan(x) for x in acts.values()], repeats)
    return {"images": n, "layers": len(acts), "k_scan": f"2..{K_MAX}",
            "project_s": round(project, 2), "baseline_s": round(baseline, 2),
            "speedup": round(baseline / project, 2)}


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
