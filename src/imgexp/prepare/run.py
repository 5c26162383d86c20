"""imgexp-prepare: check, deduplicate, split and describe a folder of class folders, writing
manifest.csv for `imgexp-train data=manifest`; `prepare.restore=true` undoes a quarantine."""

from omegaconf import DictConfig

from imgexp.cli import collector_paused, quiet_libraries, stage_main


@stage_main("prepare")
def main(cfg: DictConfig) -> None:
    with collector_paused():
        from imgexp.prepare.pipeline import run_prepare

    quiet_libraries()
    run_prepare(cfg)


if __name__ == "__main__":
    main()
