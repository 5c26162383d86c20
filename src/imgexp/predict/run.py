"""imgexp-predict: sort new images into class folders, or print the unknown threshold for a
target false-reject rate (threshold_for_frr=0.05)."""

from omegaconf import DictConfig

from imgexp.cli import collector_paused, quiet_libraries, stage_main
from imgexp.errors import ImgexpError


@stage_main("predict")
def main(cfg: DictConfig) -> None:
    with collector_paused():
        from imgexp.models.error_budget import describe
        from imgexp.predict.pipeline import predict_folder, validation_threshold

    quiet_libraries()
    if cfg.threshold_for_frr is not None:
        if cfg.predict.max_error is not None:  # the budget would be silently ignored
            raise ImgexpError("threshold_for_frr= and predict.max_error= are two ways to choose "
                              "the threshold: keep one")
        found = validation_threshold(cfg)
        print(f"predict.unknown_threshold={found['threshold']:.6g}  (predict.ood={found['ood']}: "
              f"sends {found['rejected']:.1%} of the {found['n_images']} validation images "
              "to _unknown/)")
        return
    if not cfg.input:
        raise ImgexpError("input= is not set: input=/path/to/new/images")
    summary = predict_folder(cfg)
    if "error_budget" in summary:
        print(describe(summary["error_budget"], "predict"))
    print(f"\n{summary['n_predicted']} of {summary['n_inputs']} files classified into "
          f"{summary['output']} ({summary['images_per_s']} images/s, {summary['precision']})")
    for name, count in sorted(summary["per_class"].items()):
        print(f"  {name}: {count}")
    print(f"  _unknown: {summary['n_unknown']}")
    print(f"  unreadable (rejected.csv): {summary['n_rejected']}")


if __name__ == "__main__":
    main()
