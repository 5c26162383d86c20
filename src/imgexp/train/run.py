"""imgexp-train: compose conf/train.yaml with overrides, fit, test, print where it all went."""

import atexit
import gc
from pathlib import Path

from omegaconf import DictConfig

from imgexp.cli import collector_paused, quiet_libraries, stage_main


def report(metrics: dict, run_dir: Path) -> None:
    print(f"\nrun directory: {run_dir}")
    shown = "test/" if any(k.startswith("test/") for k in metrics) else "val/"
    if shown == "val/":
        print("  no test metrics in this run; its val metrics:")
    for key in sorted(k for k in metrics if k.startswith(shown)):
        print(f"  {key} = {metrics[key]:.4f}")
    print(f"metrics:    {run_dir / 'metrics.json'}")
    print(f"checkpoint: {metrics.get('best_model_path') or 'none (fast_dev_run)'}")


@stage_main("train")
def main(cfg: DictConfig) -> float | None:
    with collector_paused():
        from imgexp.train.fit import fit_and_test
        from imgexp.train.resume import resumed_config
        from imgexp.training.ddp import ddp_job_of_a_sweep, is_rank_zero

    quiet_libraries()
    cfg = resumed_config(cfg)  # ckpt_path=...: the run's own config, checked overrides on top
    with ddp_job_of_a_sweep(cfg.trainer):
        metrics = fit_and_test(cfg)
    if is_rank_zero():
        report(metrics, Path(cfg.paths.output_dir))
    # Every output is written and closed by now. At exit the interpreter's collections would
    # walk every object made since the libraries were imported (the trainer, metrics, data:
    # the imports' own were frozen by collector_paused); frozen, they are freed by reference
    # counting only. Registered (once), not called: a process that goes on (a test, a
    # multirun's in-process jobs) is unchanged.
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    value = metrics.get(cfg.get("optimized_metric") or "")
    return float(value) if value is not None else None


if __name__ == "__main__":
    main()
