"""imgexp-export ckpt_path=CKPT format=onnx: the checkpoint as model.onnx (preprocessing and
class names inside), checked against PyTorch on a few images."""

from omegaconf import DictConfig

from imgexp.cli import collector_paused, quiet_libraries, stage_main


@stage_main("export")
def main(cfg: DictConfig) -> None:
    with collector_paused():
        from imgexp.export.pipeline import export_checkpoint

    quiet_libraries()
    report = export_checkpoint(cfg)
    print(f"{report['path']} ({report['size_mb']} MB): onnxruntime matches PyTorch on "
          f"{report['n_check_images']} {report['check_images']} images (max abs diff "
          f"{report['max_abs_diff']:.2e} <= {report['atol']:g})")
    print(f"sort images with it: imgexp-predict ckpt_path={report['path']} input=DIR")


if __name__ == "__main__":
    main()
