"""imgexp-compare: leaderboard, curves, parallel coordinates and importances of finished runs."""

from pathlib import Path

from omegaconf import DictConfig

from imgexp.cli import collector_paused, quiet_libraries, stage_main


@stage_main("compare")
def main(cfg: DictConfig) -> None:
    with collector_paused():
        from imgexp.compare.pipeline import compare_runs

    quiet_libraries()
    written = compare_runs(cfg, Path(cfg.paths.output_dir))
    print(f"\ncompared runs -> {cfg.paths.output_dir}")
    for path in written:
        print(f"  {path.name}")


if __name__ == "__main__":
    main()
