"""selection: does training on imgexp-select's choice beat training on a random subset of the
same size? Built-in digits; the extractor is a small model trained by imgexp-train on the
train split; 30% of the train split is selected (select.from_splits=[train], budget), then a
fresh model is trained on that subset and on a random subset of the same size (same val/test
split), for each seed; test accuracies are averaged.
"""

import statistics
import tempfile
from pathlib import Path

import pandas as pd
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from imgexp.atomic import write_json_atomic
from imgexp.curation.stage import run_select
from imgexp.data.digits import ensure_digits
from imgexp.fit import fit_and_test
from imgexp.paths import CONFIG_DIR

QUIET = ["logger=csv", "~callbacks.progress_bar", "trainer.enable_progress_bar=false",
         "data.image_size=16", "data.num_workers=0"]
FRACTION = 0.3
WITHIN = ("kcenter", "centroid", "random")


def config(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(name, overrides=overrides)


def train(overrides: list[str], out: Path) -> float:
    cfg = config("train", [*QUIET, f"paths.output_dir={out}", *overrides])
    return float(fit_and_test(cfg)["test/acc"])


def random_manifest(all_rows: pd.DataFrame, n_train: int, root: Path, out: Path,
                    seed: int) -> Path:
    """The same val/test rows, and n_train train images drawn at random."""
    train = all_rows[all_rows["split"] == "train"].sample(n_train, random_state=seed)
    pd.concat([train, all_rows[all_rows["split"] != "train"]]).to_csv(out, index=False)
    write_json_atomic(out.with_suffix(".json"),
                      {"root": str(root), "classes": sorted(set(all_rows["label"]))})
    return out


def run(quick: bool = False) -> dict:
    seeds, epochs = ([0, 1, 2], 3) if quick else ([0, 1, 2], 10)
    work = Path(tempfile.mkdtemp(prefix="bench_selection_"))
    data_dir = work / "data"
    ensure_digits(data_dir / "digits")
    # one split for every run, so the extractor never saw the test images
    common = [f"paths.data_dir={data_dir}", f"trainer.max_epochs={epochs}", "data.split_seed=0"]
    train(["model.backbone.channels=[16,32]", *common], work / "extractor")
    ckpt = work / "extractor" / "checkpoints" / "best.ckpt"

    results: dict[str, list[float]] = {name: [] for name in (*WITHIN, "random subset")}
    for seed in seeds:
        run_dir = work / f"select_{seed}"
        overrides = ["data=digits", *QUIET[3:], f"paths.data_dir={data_dir}", f"seed={seed}",
                     f"select.ckpt_path={ckpt}", f"select.cache_dir={work / 'cache'}",
                     "select.from_splits=[train]", "select.pictures=false", "data.split_seed=0"]
        datamodule = instantiate(config("select", overrides).data, _recursive_=False)
        all_rows = datamodule.split_table()  # the split every run shares
        n_train = int(round(FRACTION * (all_rows["split"] == "train").sum()))
        manifests = {"random subset": random_manifest(
            all_rows, n_train, Path(datamodule.root), work / f"random_{seed}.csv", seed)}
        for within in WITHIN:
            summary = run_select(config("select", [
                *overrides, f"select.budget={n_train}", f"select.within={within}",
                f"paths.output_dir={run_dir / within}"]))
            manifests[within] = Path(summary["manifest"])
        for name, manifest in manifests.items():
            results[name].append(train(["data=manifest", f"data.manifest={manifest}",
                                        f"seed={seed}", *common],
                                       work / f"train_{seed}_{name.replace(' ', '_')}"))
    means = {name: statistics.mean(accs) for name, accs in results.items()}
    out = {"setup": f"digits at 16 px, simple_cnn, {epochs} epochs, {n_train} images "
                    f"({FRACTION:.0%} of the train split), seeds {seeds}, 20 clusters, "
                    "default share curve"}
    for name, accs in results.items():
        label = f"select.within={name}" if name in WITHIN else name
        out[f"test acc, {label} (per seed)"] = [round(a, 4) for a in accs]
        out[f"mean test acc, {label}"] = round(means[name], 4)
    out["gain of the default (kcenter) over random subset (goal > 0)"] = round(
        means["kcenter"] - means["random subset"], 4)
    return out

if __name__ == "__main__":
    for key, value in run(quick=False).items():
        print(f"{key}: {value}")
