"""Why this prediction: captum's LIME over superpixels and Grad-CAM, side by side.

scikit-image (SLIC) is not a dependency, so superpixels are SLIC's own formulation done with
scikit-learn and OpenCV: k-means on (L*, a*, b*, x, y) with positions weighted by a compactness
factor (SLIC restricts the same clustering to local windows), then each cluster split into its
connected components so that every region is one contiguous patch.
"""

from pathlib import Path

import cv2
import matplotlib
import numpy as np
import torch
from captum._utils.models.linear_model import SkLearnLasso
from captum.attr import LayerAttribution, LayerGradCam, Lime
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from imgexp.atomic import atomic_path  # noqa: E402
from imgexp.models.descriptors import uncached  # noqa: E402


def superpixels(image: np.ndarray, n_segments: int, compactness: float = 20.0,
                seed: int = 0) -> np.ndarray:
    """(H, W) ids 0..n-1 of contiguous superpixels of an RGB uint8 image (about n_segments)."""
    h, w = image.shape[:2]
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float64)
    lab[..., 0] *= 100.0 / 255.0
    lab[..., 1:] -= 128.0
    step = np.sqrt(h * w / n_segments)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) * compactness / step
    features = np.concatenate([lab.reshape(-1, 3), xx.reshape(-1, 1), yy.reshape(-1, 1)], 1)
    k = min(n_segments, h * w)
    with threadpool_limits(1):  # tiny problem: threads only add contention
        ids = KMeans(n_clusters=k, n_init=1, random_state=seed).fit_predict(features)
    ids = ids.reshape(h, w)
    regions = np.zeros((h, w), np.int64)
    for cluster in np.unique(ids):
        _, parts = cv2.connectedComponents((ids == cluster).astype(np.uint8), connectivity=4)
        inside = parts > 0
        regions[inside] = regions.max() + parts[inside]
    return np.unique(regions, return_inverse=True)[1].reshape(h, w)


def gradient_scores(model):
    """Differentiable per-class scores for Grad-CAM: the logits of a softmax head; for an
    embedding head, whose k-NN vote is piecewise constant in the input, the cosine similarity
    to each class's mean gallery embedding (its smooth stand-in)."""
    if getattr(model.head, "kind", "") != "embedding":
        return model
    gallery, labels = model.gallery_embeddings, model.gallery_labels
    prototypes = torch.stack([gallery[labels == c].mean(0) if (labels == c).any()
                              else torch.zeros_like(gallery[0])
                              for c in range(len(model.class_names))])
    prototypes = torch.nn.functional.normalize(prototypes, dim=-1)
    return lambda x: torch.nn.functional.normalize(model(x), dim=-1) @ prototypes.T


def lime_weights(model, image: np.ndarray, target: int, segments: np.ndarray,
                 n_samples: int, seed: int) -> np.ndarray:
    """One LIME weight per superpixel for class `target` (masked regions -> mean colour),
    fitted to the model's own class probabilities (softmax or k-NN vote)."""
    torch.manual_seed(seed)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    mask = torch.from_numpy(segments)[None, None].expand_as(x).long()
    baseline = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    lime = Lime(model.predict_proba, interpretable_model=SkLearnLasso(alpha=0.001))
    with uncached(model):
        weights = lime.attribute(x, target=target, feature_mask=mask, baselines=baseline,
                                 n_samples=n_samples, perturbations_per_eval=64,
                                 return_input_shape=False)
    return weights.reshape(-1).detach().numpy()


def grad_cam(model, image: np.ndarray, target: int, layer: str) -> np.ndarray:
    """(H, W) Grad-CAM heat in [0, 1] at `layer`, upsampled to the image."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float().requires_grad_(True)
    cam = LayerGradCam(gradient_scores(model), model.get_submodule(layer))
    heat = cam.attribute(x, target=target, relu_attributions=True)
    heat = LayerAttribution.interpolate(heat, tuple(image.shape[:2]), "bilinear")
    heat = heat[0, 0].detach().numpy()
    return heat / heat.max() if heat.max() > 0 else heat


def top_regions(weights: np.ndarray, count: int) -> list[int]:
    """The `count` superpixels pushing hardest towards the class (positive weights only)."""
    order = np.argsort(weights)[::-1][:count]
    return [int(i) for i in order if weights[i] > 0]


def _boundaries(segments: np.ndarray) -> np.ndarray:
    edge = np.zeros(segments.shape, bool)
    edge[:-1] |= segments[:-1] != segments[1:]
    edge[:, :-1] |= segments[:, :-1] != segments[:, 1:]
    return edge


def plot_explanation(image: np.ndarray, segments: np.ndarray, weights: np.ndarray,
                     heat: np.ndarray | None, regions: list[int], title: str, path: Path) -> None:
    """Image | LIME top regions (rest dimmed, superpixel borders) | LIME weights per region
    | Grad-CAM overlay (heat None: the panel says there is none) | bar chart of the largest
    region weights (the seed's figures)."""
    # small images are enlarged (nearest) so one-pixel region borders stay thin
    scale = max(1, 160 // max(image.shape[:2]))
    image = image.repeat(scale, 0).repeat(scale, 1)
    segments = segments.repeat(scale, 0).repeat(scale, 1)
    keep = np.isin(segments, regions)
    shown = image.astype(float) / 255
    focus = np.where(keep[..., None], shown, shown * 0.25)
    focus[_boundaries(segments)] = (1.0, 1.0, 0.0)
    limit = max(np.abs(weights).max(), 1e-12)
    fig, axes = plt.subplots(1, 5, figsize=(15, 3.3),
                             gridspec_kw={"width_ratios": [1, 1, 1, 1, 1.3]})
    panels = [(shown, "image", {}), (focus, f"LIME: top {len(regions)} regions", {}),
              (weights[segments], "LIME weight per region",
               {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit}),
              (shown, "Grad-CAM" if heat is not None else "no Grad-CAM (no gradients)", {})]
    for ax, (data, name, kwargs) in zip(axes, panels, strict=False):
        ax.imshow(data, interpolation="nearest", **kwargs)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if heat is not None:
        axes[3].imshow(heat.repeat(scale, 0).repeat(scale, 1), cmap="jet", alpha=0.45,
                       interpolation="bilinear")
    order = np.argsort(np.abs(weights))[::-1][:8]
    axes[4].barh([f"region {i}" for i in order][::-1], weights[order][::-1],
                 color=["tab:red" if weights[i] > 0 else "tab:blue" for i in order][::-1])
    axes[4].set_title("largest LIME weights", fontsize=9)
    axes[4].tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
