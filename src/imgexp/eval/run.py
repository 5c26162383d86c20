"""imgexp-eval: score a checkpoint on its data split; prints where the report went."""

from pathlib import Path

from omegaconf import DictConfig

from imgexp.cli import collector_paused, quiet_libraries, stage_main


@stage_main("eval")
def main(cfg: DictConfig) -> float:
    with collector_paused():
        from imgexp.eval.pipeline import evaluate_checkpoint

    quiet_libraries()
    metrics = evaluate_checkpoint(cfg)
    out_dir = Path(cfg.paths.output_dir)
    print(f"\neval directory: {out_dir}")
    for key in sorted(k for k in metrics if k.startswith(f"{cfg.split}/")):
        value = metrics[key]
        print(f"  {key} = {value:.4f}" if isinstance(value, float) else f"  {key} = {value}")
    print(f"errors report: {out_dir / 'errors' / 'errors.html'}")
    return metrics[f"{cfg.split}/acc"]


if __name__ == "__main__":
    main()
