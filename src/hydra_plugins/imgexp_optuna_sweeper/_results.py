"""optimization_results.yaml: the study's best trial and every trial with its job directory."""

from pathlib import Path

import optuna
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, TrialState

from imgexp.atomic import write_text_atomic

OFFLINE_WANDB_GLOB = "*/wandb/offline-run-*"


def _trial_entry(trial: FrozenTrial) -> dict:
    entry = {"number": trial.number, "state": trial.state.name,
             "value": trial.value if trial.values and len(trial.values) == 1 else trial.values,
             "params": dict(trial.params), "job_dir": trial.user_attrs.get("job_dir")}
    if "error" in trial.user_attrs:
        entry["error"] = trial.user_attrs["error"]
    return entry


def results_dict(study: optuna.Study, storage_url: str) -> dict:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    out = {"study_name": study.study_name, "storage": storage_url,
           "direction": [d.name.lower() for d in study.directions],
           "counts": {s.name: sum(t.state == s for t in trials) for s in TrialState
                      if any(t.state == s for t in trials)}}
    if complete and len(study.directions) == 1:
        best = study.best_trial
        out.update(best_params=dict(best.params), best_value=best.value,
                   best_trial=best.number, best_job_dir=best.user_attrs.get("job_dir"))
    elif complete:
        out["best_trials"] = [_trial_entry(t) for t in study.best_trials]
    out["trials"] = [_trial_entry(t) for t in trials]
    return out


def write_results(study: optuna.Study, sweep_dir: Path, storage_url: str) -> Path:
    return write_text_atomic(sweep_dir / "optimization_results.yaml",
                             OmegaConf.to_yaml(OmegaConf.create(results_dict(study, storage_url))))


def offline_wandb_runs(sweep_dir: Path) -> list[Path]:
    return sorted(sweep_dir.glob(OFFLINE_WANDB_GLOB))
