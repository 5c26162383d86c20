"""imgexp-select: choose the images worth annotating (features -> k-means -> per-cluster pick)."""

from pathlib import Path

from omegaconf import DictConfig

from imgexp.cli import collector_paused, quiet_libraries, stage_main


def spread(score: dict) -> str:
    """mean ± std over the random experiments; the mean alone when every experiment drew the
    same images (a selection smaller than the sample: a ± 0.0000 would claim a precision)."""
    return f"{score['mean']:.4f}" + (f" ± {score['std']:.4f}" if score["std"] else "")


def report(summary: dict, run_dir: Path) -> None:
    print(f"\nrun directory: {run_dir}")
    if "shard" in summary:
        f = summary["features"]
        print(f"  shard {summary['shard']} of {summary['num_shards']}: {f['total']} images, "
              f"{f['computed']} computed, {f['cached']} cached, {len(f['unreadable'])} unreadable")
        print("  once every shard is done, run the same command without select.shard: it "
              "clusters, reading the features from the cache")
        return
    print(f"  images: {summary['n_images']}  selected: {summary['n_selected']} "
          f"({summary['selected_fraction']:.1%}) in {summary['clustering']['n_clusters']} clusters")
    print(f"  features: {summary['features']['computed']} computed, "
          f"{summary['features']['cached']} cached, {len(summary['unreadable'])} unreadable")
    for name, hint in (("similarity", "0 = unrelated"), ("redundancy", "nearest look-alike")):
        whole, part = summary[f"{name}_all"], summary[f"{name}_selected"]
        if whole["mean"] is not None and part["mean"] is not None:
            print(f"  {name}: all {spread(whole)}, selected {spread(part)} "
                  f"({hint}; lower = more diverse)")
    print(f"selection: {run_dir / 'selection.csv'}")
    if summary["manifest"]:
        print(f"train on it: imgexp-train data=manifest data.manifest={summary['manifest']}")
    if summary["export"]["export_dir"]:
        print(f"exported to: {summary['export']['export_dir']}")


@stage_main("select")
def main(cfg: DictConfig) -> None:
    with collector_paused():
        from imgexp.select.pipeline import run_select

    quiet_libraries()
    report(run_select(cfg), Path(cfg.paths.output_dir))


if __name__ == "__main__":
    main()
