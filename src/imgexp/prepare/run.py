"""imgexp-prepare: check, deduplicate, split and describe a folder of class folders, writing
manifest.csv for `imgexp-train data=manifest`; `prepare.restore=true` undoes a quarantine."""

from omegaconf import DictConfig

from imgexp.cli import collector_paused, quiet_libraries, stage_main, unset_keys_error


@stage_main("prepare")
def main(cfg: DictConfig) -> None:
    # data.root is null, not ???, in conf/prepare.yaml: prepare.restore needs none
    if not cfg.prepare.restore and not cfg.data.root:
        raise unset_keys_error(["data.root"])
    with collector_paused():
        from imgexp.prepare.pipeline import run_prepare

    quiet_libraries()
    run_prepare(cfg)


if __name__ == "__main__":
    main()
