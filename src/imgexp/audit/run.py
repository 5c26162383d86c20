"""imgexp-audit: find near-duplicates, train/test leaks, poor images and likely label errors in a
data set, without changing it; everything found goes into the run directory."""

from omegaconf import DictConfig

from imgexp.cli import collector_paused, quiet_libraries, stage_main


@stage_main("audit")
def main(cfg: DictConfig) -> None:
    with collector_paused():
        from imgexp.audit.pipeline import run_audit

    quiet_libraries()
    run_audit(cfg)


if __name__ == "__main__":
    main()
