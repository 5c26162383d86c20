"""The explain run: images -> activations -> clusters, maps, paths, attribution, OOD -> report."""

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.offline
from omegaconf import DictConfig, OmegaConf

from imgexp.atomic import atomic_path, write_frame_atomic, write_json_atomic, write_text_atomic
from imgexp.errors import ImgexpError
from imgexp.explain import attribution, clustering, layer_paths, maps, ood, report
from imgexp.explain.activations import check_layers, collect, default_layers, grad_cam_layer
from imgexp.explain.inputs import ImageSet, load_folder, load_split
from imgexp.models import load_model
from imgexp.models.data_config import checkpoint_datamodule, input_size
from imgexp.models.inference import inference_for
from imgexp.progress import progress

log = logging.getLogger(__name__)
PLOTLY_JS = "plotly.min.js"  # one local copy at the run root, referenced by every HTML page
PLOTLY_SRC = f"../{PLOTLY_JS}"  # as seen from maps/ and paths/


def predictions(images: ImageSet, probs: np.ndarray, class_names: list[str],
                data_classes: list[str]) -> pd.DataFrame:
    """One row per image; true/predicted compared by name, so another dataset works too."""
    predicted = [class_names[i] for i in probs.argmax(1)]
    true = [data_classes[i] if i >= 0 else "" for i in images.labels]
    return pd.DataFrame({"path": images.paths, "true": true, "predicted": predicted,
                         "confidence": probs.max(1).round(4),
                         "correct": np.array(true) == np.array(predicted)})


def pick_examples(table: pd.DataFrame, n: int, seed: int) -> list[tuple[str, int]]:
    """The n most confident mistakes and n correct images spread over the classes."""
    wrong = table.index[~table["correct"]][np.argsort(-table["confidence"][~table["correct"]])]
    right = table[table["correct"]].sample(frac=1.0, random_state=seed)
    right = right.assign(rank=right.groupby("true").cumcount()).sort_values("rank", kind="stable")
    return ([("misclassified", int(i)) for i in wrong[:n]]
            + [("correct", int(i)) for i in right.index[:n]])


def _shown(images: ImageSet, ex: DictConfig, desc: str):
    """The batches of `images`, counted in images on the progress bar or log lines."""
    bar = progress(total=len(images), enabled=ex.progress, desc=desc, unit="img")
    for batch in images.batches(ex.batch_size):
        yield batch
        bar.update(len(batch))
    bar.close()


def explain_examples(model, images: ImageSet, table: pd.DataFrame, cfg: DictConfig,
                     layer: str | None, out: Path, seed: int) -> list[dict]:
    """LIME and (at `layer`; None: none) Grad-CAM of the picked examples."""
    settings = cfg.attribution
    (out / "attribution").mkdir(exist_ok=True)
    done = []
    for kind, i in progress(pick_examples(table, settings.n, seed), enabled=cfg.progress,
                            desc="attribution", unit="img"):
        image = images.images[i]
        target = model.class_names.index(table.at[i, "predicted"])
        segments = attribution.superpixels(image, settings.superpixels, seed=seed)
        weights = attribution.lime_weights(model, image, target, segments,
                                           settings.lime_samples, seed)
        heat = attribution.grad_cam(model, image, target, layer) if layer else None
        regions = attribution.top_regions(weights, settings.top_regions)
        row = table.loc[i]
        caption = (f"{kind}: {Path(row['path']).name} — true {row['true']}, predicted "
                   f"{row['predicted']} ({row['confidence']:.2f}); "
                   + (f"Grad-CAM at {layer}" if layer else "no Grad-CAM (no gradients)"))
        png = f"attribution/{kind}_{i}.png"
        attribution.plot_explanation(image, segments, weights, heat, regions, caption, out / png)
        done.append({"png": png, "caption": caption, "kind": kind, "index": i,
                     "top_regions": regions})
    return done


def explain_layer(layer: str, acts: np.ndarray, classes: np.ndarray, table: pd.DataFrame,
                  unseen_acts: np.ndarray | None, unseen_table: pd.DataFrame | None,
                  class_names: list[str], k, ex: DictConfig, out: Path, seed: int):
    """Activations file, k-means (+ k curve), scores and PCA maps (PNG, HTML, CSV) of one layer.

    Adds the layer's cluster of each unseen-class image to unseen_table."""
    with atomic_path(out / "activations" / f"{layer}.npy") as tmp:
        np.save(tmp, acts.astype(np.float32))
    result = clustering.cluster_layer(layer, acts, k, ex.k_max, ex.k_rule, seed)
    score = clustering.layer_scores(result, acts, classes, len(class_names), seed)
    page = {"name": layer, "file": layer, "npy": f"activations/{layer}.npy",
            "map_png": f"maps/{layer}.png", "map_html": f"maps/{layer}.html"}
    if result.curve:
        page["k_png"] = f"clustering/k_{layer}.png"
        clustering.plot_k_choice(result, out / page["k_png"])
    xy = maps.project(result, acts, unseen_acts, seed)
    title = f"{layer}: k={result.k}"
    points = table.assign(cluster=result.labels, x=xy["points"][:, 0], y=xy["points"][:, 1])
    # path,x,y,...: the 2-D map imgexp-app's Browse view reads (app.map_csv=)
    write_frame_atomic(points.round(4), out / "maps" / f"{layer}.csv")
    maps.plot_png(xy, points, class_names, title, out / page["map_png"])
    maps.plot_html(xy, points, unseen_table, class_names, title, out / page["map_html"],
                   PLOTLY_SRC)
    if unseen_table is not None:
        unseen_table[layer] = result.assign(unseen_acts)
    return result, score, page


def doubt_on_unseen(table: pd.DataFrame, unseen_table: pd.DataFrame, split: str,
                    out: Path) -> dict:
    (out / "ood").mkdir(exist_ok=True)
    write_frame_atomic(unseen_table, out / "ood" / "ood_predictions.csv")
    known, unseen = table["confidence"].to_numpy(), unseen_table["confidence"].to_numpy()
    ood.plot_confidence(known, unseen, split, out / "ood" / "confidence.png")
    stats = ood.confidence_separation(known, unseen)
    return {"png": "ood/confidence.png", "stats": {"images": len(unseen), **stats}}


def run(cfg: DictConfig) -> dict:
    ex, seed = cfg.explain, int(cfg.seed)
    model = load_model(cfg.ckpt_path)
    # activations and probabilities only: attributions take gradients in fp32 whatever it says
    inference = inference_for(model, "cpu", cfg.inference)
    layers = check_layers(model, ex.layers or default_layers(model))
    size = input_size(model)
    # before the activations: a Grad-CAM layer the model cannot serve is refused at once
    cam_layer = grad_cam_layer(model, ex.attribution.layer, (size, size))
    out = Path(cfg.paths.output_dir)
    for sub in ("activations", "clustering", "maps", "paths"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / PLOTLY_JS, plotly.offline.get_plotlyjs())

    overrides = OmegaConf.to_container(cfg.data, resolve=True) if cfg.get("data") else None
    images, data_classes = load_split(checkpoint_datamodule(model, overrides), cfg.split,
                                      ex.max_images, seed)
    if len(images) < 3:
        raise ImgexpError(f"only {len(images)} readable image(s) in split={cfg.split}: "
                          "k-means and PCA need at least 3")
    log.info("explaining %d %s images at layers %s", len(images), cfg.split, layers)
    acts, probs = collect(model, _shown(images, ex, "activations"), layers, inference)
    table = predictions(images, probs, model.class_names, data_classes)
    write_frame_atomic(table, out / "activations" / "images.csv", index_label="row")

    unseen = unseen_acts = unseen_table = None
    if ex.ood_dir:
        unseen = load_folder(ex.ood_dir, size, ex.max_images, seed)
        unseen_acts, unseen_probs = collect(model, _shown(unseen, ex, "activations (ood_dir)"),
                                            layers, inference)
        unseen_table = predictions(unseen, unseen_probs, model.class_names, data_classes)

    k_setting = OmegaConf.to_container(ex.k) if isinstance(ex.k, DictConfig) else ex.k
    scores, clusters, layer_pages = [], {}, []
    for layer in layers:
        result, score, page = explain_layer(
            layer, acts[layer], images.labels, table, unseen_acts[layer] if unseen else None,
            unseen_table, data_classes, clustering.k_for(layer, k_setting), ex, out, seed)
        clusters[layer] = result.labels
        scores.append(score)
        layer_pages.append(page)

    purity = pd.DataFrame(scores)
    write_frame_atomic(purity, out / "clustering" / "purity.csv")
    all_paths = layer_paths.path_table(table, clusters)
    write_frame_atomic(all_paths, out / "clustering" / "clusters.csv", index_label="row")
    write_frame_atomic(all_paths.sort_values("typicality"), out / "paths" / "paths.csv",
                       index_label="row")
    odd = layer_paths.least_typical(all_paths, ex.least_typical_per_class)
    write_frame_atomic(odd, out / "paths" / "least_typical.csv")
    layer_paths.plot_parallel(all_paths, layers, data_classes, out / "paths" / "paths.html",
                        PLOTLY_SRC)

    ood_info = doubt_on_unseen(table, unseen_table, cfg.split, out) if unseen else None
    examples = explain_examples(model, images, table, ex, cam_layer, out, seed)
    summary = {"checkpoint": str(cfg.ckpt_path), "backbone": type(model.backbone).__name__,
               "head": getattr(model.head, "kind", type(model.head).__name__),
               "split": cfg.split, "images": len(images),
               "accuracy": round(float(table["correct"].mean()), 4),
               "layers": layers, "purity": scores, "attribution": examples,
               "ood": ood_info["stats"] if ood_info else None,
               "inference": inference.fields()}
    write_json_atomic(out / "summary.json", summary)
    facts = {k: summary[k] for k in ("checkpoint", "backbone", "head", "split", "images",
                                     "accuracy")}
    facts["sampling"] = (f"stratified, at most {ex.max_images}" if ex.max_images else "all")
    show = odd.drop(columns=list(layers)).head(3 * ex.least_typical_per_class)
    report.write_index(out, facts, purity, layer_pages, show, examples, ood_info)
    return summary


def print_layers(cfg: DictConfig) -> None:
    from imgexp.explain.activations import list_layers

    model = load_model(cfg.ckpt_path)
    print("module name  (type)  [* = read by default]")
    for name, kind, default in list_layers(model):
        print(f"{'*' if default else ' '} {name}  ({kind})")
