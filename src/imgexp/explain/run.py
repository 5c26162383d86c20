"""imgexp-explain: why does a checkpoint classify as it does? Layer clusters, maps, paths,
LIME/Grad-CAM and doubt on unseen classes, in one offline HTML report."""

from pathlib import Path

from omegaconf import DictConfig

from imgexp.cli import collector_paused, quiet_libraries, stage_main


@stage_main("explain")
def main(cfg: DictConfig) -> None:
    with collector_paused():
        from imgexp.explain.pipeline import print_layers, run

    quiet_libraries()
    if cfg.explain.list_layers:
        print_layers(cfg)
        return
    summary = run(cfg)
    out = Path(cfg.paths.output_dir)
    print(f"\nexplained {summary['images']} {summary['split']} images "
          f"(accuracy {summary['accuracy']:.3f})")
    for row in summary["purity"]:
        print(f"  {row['layer']:<32} k={row['k']:<3} purity={row['purity']:.3f} "
              f"purity@classes={row['purity_at_num_classes']:.3f}")
    print(f"report: {out / 'index.html'}")


if __name__ == "__main__":
    main()
