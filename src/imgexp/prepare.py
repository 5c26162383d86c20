"""imgexp-prepare: check, deduplicate, split and describe a folder of class folders, writing
manifest.csv for `imgexp-train data=manifest`; `prepare.restore=true` undoes a quarantine."""

from omegaconf import DictConfig

from imgexp.cli import stage_main
from imgexp.curation.pipeline import run_prepare


@stage_main("prepare")
def main(cfg: DictConfig) -> None:
    run_prepare(cfg)


if __name__ == "__main__":
    main()
