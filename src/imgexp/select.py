"""imgexp-select: choose the images worth annotating (features -> k-means -> per-cluster pick)."""

from pathlib import Path

from omegaconf import DictConfig

from imgexp.cli import stage_main
from imgexp.curation.stage import run_select


def report(summary: dict, run_dir: Path) -> None:
    sim_all, sim_sel = summary["similarity_all"], summary["similarity_selected"]
    print(f"\nrun directory: {run_dir}")
    print(f"  images: {summary['n_images']}  selected: {summary['n_selected']} "
          f"({summary['selected_fraction']:.1%}) in {summary['clustering']['n_clusters']} clusters")
    print(f"  features: {summary['features']['computed']} computed, "
          f"{summary['features']['cached']} cached, {len(summary['unreadable'])} unreadable")
    if sim_all["mean"] is not None and sim_sel["mean"] is not None:
        print(f"  similarity: all {sim_all['mean']:.4f} ± {sim_all['std']:.4f}, "
              f"selected {sim_sel['mean']:.4f} ± {sim_sel['std']:.4f} (0 = unrelated)")
    print(f"selection: {run_dir / 'selection.csv'}")
    if summary["manifest"]:
        print(f"train on it: imgexp-train data=manifest data.manifest={summary['manifest']}")
    if summary["export"]["export_dir"]:
        print(f"exported to: {summary['export']['export_dir']}")


@stage_main("select")
def main(cfg: DictConfig) -> None:
    report(run_select(cfg), Path(cfg.paths.output_dir))


if __name__ == "__main__":
    main()
