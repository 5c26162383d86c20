"""Send eval metrics back to the loggers of the run that made the checkpoint, so runs compare
on test metrics wherever they are browsed (the run's CSV log, its W&B run)."""

import logging
import os
from pathlib import Path

import pandas as pd

from imgexp.atomic import write_text_atomic
from imgexp.models.factory import read_checkpoint

log = logging.getLogger(__name__)


def run_dir_of(ckpt_path: str | Path) -> Path:
    """RUN/checkpoints/best.ckpt -> RUN (wherever the run folder was moved to)."""
    return Path(ckpt_path).resolve().parent.parent


def _logger_targets(config: dict) -> list[str]:
    entries = (config.get("logger") or {}).values()
    return [e.get("_target_", "") for e in entries if isinstance(e, dict)]


def append_csv_row(csv_path: Path, metrics: dict) -> None:
    """One more row in the run's csv/metrics.csv, new columns added (Lightning's CSVLogger
    would delete the file if reopened, so the row is appended here)."""
    table = pd.read_csv(csv_path)
    step = int(table["step"].max()) if "step" in table and len(table) else 0
    row = pd.DataFrame([{**metrics, "step": step}])
    table = pd.concat([table, row], ignore_index=True)
    write_text_atomic(csv_path, table.to_csv(index=False))


def log_to_wandb(run_id: str, config: dict, metrics: dict, run_dir: Path) -> None:
    import wandb

    entry = next(e for e in config["logger"].values()
                 if isinstance(e, dict) and "Wandb" in e.get("_target_", ""))
    from imgexp.tracking.wandb_run import quiet_settings

    mode = os.environ.get("WANDB_MODE", entry.get("mode") or "offline")
    run = wandb.init(id=run_id, resume="allow", project=entry.get("project"), dir=str(run_dir),
                     mode=mode, settings=quiet_settings(mode))
    try:
        run.log(metrics)
        run.summary.update(metrics)
    finally:
        run.finish()


def log_to_run_loggers(ckpt_path: str | Path, metrics: dict, meta: dict | None = None
                       ) -> list[str]:
    """Returns what was written to, for the user's report. `meta`: the checkpoint's "imgexp"
    entry when the caller has read the checkpoint already (it is not read a second time)."""
    metrics = {k: v for k, v in metrics.items() if v is not None}
    meta = meta if meta is not None else read_checkpoint(ckpt_path)["imgexp"]
    config, run_dir = meta["config"], run_dir_of(ckpt_path)
    targets = _logger_targets(config)
    done = []
    csv_path = run_dir / "csv" / "metrics.csv"
    if any("CSVLogger" in t for t in targets) and csv_path.is_file():
        append_csv_row(csv_path, metrics)
        done.append(str(csv_path))
    if any("Wandb" in t for t in targets) and meta.get("wandb_run_id"):
        try:
            log_to_wandb(meta["wandb_run_id"], config, metrics, run_dir)
            done.append(f"wandb run {meta['wandb_run_id']}")
        except Exception as exc:  # W&B down or misconfigured must not lose the eval itself
            log.warning("could not log to W&B run %s: %s", meta["wandb_run_id"], exc)
    return done
