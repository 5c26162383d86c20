"""selection: does training on imgexp-select's choice beat training on a random subset of the
same size? Built-in digits, as they are (balanced) and with a long tail of classes in the train
split; the extractor is a small model trained by imgexp-train on that collection; 10% and 30%
of its train split are selected (select.from_splits=[train], budget), then a fresh model is
trained on that subset and on a random subset of the same size (same balanced val/test
split), for each seed; test accuracies are averaged.

Every subset is trained for the same number of optimiser steps whatever its size: a small
subset trained for a few epochs is under-fitted, and an under-fitted model favours whichever
subset holds the easiest images (the most typical ones), not the most informative.
"""

import math
import multiprocessing
import os
import statistics
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from threadpoolctl import threadpool_limits

from imgexp.atomic import write_json_atomic
from imgexp.data.digits import ensure_digits
from imgexp.paths import CONFIG_DIR
from imgexp.select.pipeline import run_select
from imgexp.train.fit import fit_and_test

QUIET = ["logger=csv", "~callbacks.progress_bar", "trainer.enable_progress_bar=false",
         "data.image_size=16", "data.num_workers=0"]
FRACTIONS = (0.1, 0.3)
# the digits as they are, and a long tail of classes: what the share curve is for (rare kinds
# of images kept, common ones thinned out)
SCENARIOS = {"balanced": None,
             "long-tailed": (1.0, 0.7, 0.5, 0.35, 0.25, 0.18, 0.12, 0.09, 0.06, 0.05)}
WITHIN = ("typical", "kcenter", "centroid", "random")
BATCH = 32


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


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def collection(all_rows: pd.DataFrame, keep: tuple[float, ...] | None, root: Path,
               out: Path) -> tuple[pd.DataFrame, Path]:
    """The collection to select from: the digits' train split as it is, or with class c cut
    to keep[c] of its images (a long tail); val and test stay whole and balanced."""
    rows = all_rows
    if keep is not None:
        train = all_rows[all_rows["split"] == "train"]
        kept = [group.sample(round(keep[int(label)] * len(group)), random_state=0)
                for label, group in train.groupby("label")]
        rows = pd.concat([*kept, all_rows[all_rows["split"] != "train"]])
    rows.to_csv(out, index=False)
    write_json_atomic(out.with_suffix(".json"),
                      {"root": str(root), "classes": sorted(set(all_rows["label"]))})
    return rows, out


def subsets(task: dict) -> dict:
    """One (scenario, seed): select each fraction with each `within`, draw the random subset of
    the same size, train a fresh model on each -> {(fraction, name): test accuracy}. Runs in
    its own process with one thread (torch, and k-means' OpenMP: its result depends on the
    thread count), so tasks run side by side on a many-core machine with the same results."""
    torch.set_num_threads(1)
    threadpool_limits(1)
    work, rows, seed = Path(task["work"]), task["rows"], task["seed"]
    common, tag0 = task["common"], f"{task['scenario']}_{{}}_{seed}"
    overrides = ["data=manifest", f"data.manifest={task['manifest']}", *QUIET[3:],
                 f"paths.data_dir={task['data_dir']}", f"seed={seed}",
                 f"select.ckpt_path={task['extractor']}",
                 f"select.cache_dir={work / 'cache' / str(seed)}", "select.from_splits=[train]",
                 "select.pictures=false"]
    accs = {}
    for fraction in FRACTIONS:
        n_train = int(round(fraction * task["size"]))
        epochs = math.ceil(task["steps"] / math.ceil(n_train / BATCH))
        tag = tag0.format(f"{fraction:.0%}")
        manifests = {"random subset": random_manifest(
            rows, n_train, Path(task["root"]), work / f"random_{tag}.csv", seed)}
        for within in task["withins"]:
            summary = run_select(config("select", [
                *overrides, f"select.budget={n_train}", f"select.within={within}",
                f"paths.output_dir={work / f'select_{tag}' / within}"]))
            manifests[within] = Path(summary["manifest"])
        for name, subset in manifests.items():
            accs[(fraction, name)] = train(
                ["data=manifest", f"data.manifest={subset}", f"seed={seed}",
                 f"trainer.max_epochs={epochs}",
                 # one validation, at the end: the model tested is the last
                 f"trainer.check_val_every_n_epoch={epochs}", *common],
                work / f"train_{tag}_{name.replace(' ', '_')}")
    return accs


def run(quick: bool = False, jobs: int | None = None) -> dict:
    seeds, steps = ([0, 1, 2], 120) if quick else ([0, 1, 2, 3, 4], 240)
    # quick: the default choice only (the share curve is what a quick run checks)
    default = config("select", []).select.within
    withins = (default,) if quick else (default, *(w for w in WITHIN if w != default))
    work = Path(tempfile.mkdtemp(prefix="bench_selection_"))
    data_dir = work / "data"
    ensure_digits(data_dir / "digits")
    # one split for every run, so the extractor never saw the test images
    common = [f"paths.data_dir={data_dir}", "data.split_seed=0", f"data.batch_size={BATCH}"]
    datamodule = instantiate(config("train", ["data=digits", *common]).data, _recursive_=False)
    all_rows = datamodule.split_table()

    tasks, sizes = [], {}
    for scenario, keep in SCENARIOS.items():
        rows, manifest = collection(all_rows, keep, Path(datamodule.root),
                                    work / f"{scenario}.csv")
        sizes[scenario] = int((rows["split"] == "train").sum())
        # the extractor: a model trained on the collection (its labels), as a user would have
        extractor_dir = work / f"extractor_{scenario}"
        train(["data=manifest", f"data.manifest={manifest}", "model.backbone.channels=[16,32]",
               "trainer.max_epochs=10", *common], extractor_dir)
        tasks += [dict(work=str(work), rows=rows, seed=seed, common=common, scenario=scenario,
                       manifest=str(manifest), data_dir=str(data_dir), root=str(datamodule.root),
                       extractor=str(extractor_dir / "checkpoints" / "best.ckpt"),
                       size=sizes[scenario], steps=steps, withins=withins)
                  for seed in seeds]
    # the accuracies do not depend on how many tasks run at once (each is seeded, one thread)
    jobs = jobs or max(1, (os.cpu_count() or 1) - 1)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        done = list(pool.map(subsets, tasks))
    results: dict[tuple[str, float, str], list[float]] = {}
    for task, accs in zip(tasks, done, strict=True):
        for (fraction, name), acc in accs.items():
            results.setdefault((task["scenario"], fraction, name), []).append(acc)
    n_test = int((all_rows["split"] == "test").sum())
    out = {"setup": f"digits at 16 px, simple_cnn, {steps} optimiser steps per subset "
                    f"(batch {BATCH}), seeds {seeds}, 20 clusters, default share curve "
                    f"(p_min 0.1, p_max 0.6, growth 2, relative to the median cluster); "
                    f"{n_test} balanced test images "
                    f"(one image = {1 / n_test:.4f})",
           "collections (train images)": {
               name: f"{sizes[name]}" + (f", class c keeps {list(keep)}[c]" if keep else "")
               for name, keep in SCENARIOS.items()}}
    for scenario in SCENARIOS:
        for fraction in FRACTIONS:
            head = f"{scenario}, {fraction:.0%}"
            for name in ("random subset", *withins):
                label = f"select.within={name}" if name in WITHIN else name
                accs = results[(scenario, fraction, name)]
                out[f"{head}: test acc, {label} (mean ± std)"] = mean_std(accs)
                out[f"{head}: test acc, {label} (per seed)"] = [round(a, 4) for a in accs]
            gain = (statistics.mean(results[(scenario, fraction, default)])
                    - statistics.mean(results[(scenario, fraction, "random subset")]))
            out[f"{head}: gain of the default ({default}) over a random subset (goal > 0)"] = \
                round(gain, 4)
    return out


if __name__ == "__main__":
    for key, value in run(quick=False).items():
        print(f"{key}: {value}")
