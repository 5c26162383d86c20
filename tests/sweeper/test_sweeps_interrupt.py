"""An interrupted sweep: Ctrl-C stops it with the trial failed, a killed one is found stale by
Optuna's heartbeat; either way rerunning the same command reaches n_trials finished trials."""

import shlex
import signal

import optuna
import pytest
from optuna.trial import TrialState

from helpers.sweeps import TINY, hold_overrides, interrupt_when_held, run_stage

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _sweep_args(tmp_path, data_dir, *extra, swallow=False):
    return ["-m", f"paths.log_dir={tmp_path}", f"paths.data_dir={data_dir}", *TINY,
            "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "optimizer.lr=interval(1e-3,1e-2)",
            f"hydra.sweep.dir={tmp_path}/sweep",
            *hold_overrides(tmp_path / "held", job=1, swallow=swallow), *extra]


def _study(tmp_path):
    return optuna.load_study(study_name="sweep", storage=f"sqlite:///{tmp_path}/sweep/optuna.db")


def _states(study):
    return [t.state for t in study.get_trials(deepcopy=False)]


@pytest.mark.slow
@pytest.mark.parametrize("swallow", [False, True], ids=["lightning", "job-returns-cut-short"])
def test_ctrl_c_stops_the_sweep_fails_the_trial_and_the_printed_command_continues(
        tmp_path, data_dir, swallow):
    """Lightning exits after its graceful shutdown; a job that instead returns its cut-short
    result (Lightning < 2.4, or any app catching the interrupt) must not be recorded either."""
    proc = interrupt_when_held(_sweep_args(tmp_path, data_dir, swallow=swallow),
                               tmp_path / "held", signal.SIGINT)
    assert proc.returncode == 130, proc.stderr[-3000:]
    study = _study(tmp_path)
    assert _states(study)[:2] == [TrialState.COMPLETE, TrialState.FAIL]
    assert "interrupted" in study.trials[1].user_attrs["error"]
    if not swallow:
        assert not (tmp_path / "sweep" / "1" / "metrics.json").exists()  # no cut-short result
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "to continue" in ln]
    assert len(lines) == 1, proc.stdout + proc.stderr
    command = shlex.split(lines[0].split("to continue", 1)[1].split(":", 1)[1])
    assert command[:3] == ["python", "-m", "imgexp.train"]

    run_stage("imgexp.train", command[3:])
    study = _study(tmp_path)
    finished = study.get_trials(deepcopy=False, states=FINISHED)
    assert len(finished) == 2
    retry = [t for t in finished if t.system_attrs.get("failed_trial") == 1]
    assert len(retry) == 1 and retry[0].params == study.trials[1].params  # re-queued


@pytest.mark.slow
def test_a_killed_sweep_leaves_a_stale_trial_that_the_rerun_fails_and_retries(tmp_path, data_dir):
    args = _sweep_args(tmp_path, data_dir, "hydra.sweeper.heartbeat_interval=1",
                       "hydra.sweeper.grace_period=1")
    proc = interrupt_when_held(args, tmp_path / "held", signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert _states(_study(tmp_path)) == [TrialState.COMPLETE, TrialState.RUNNING]

    run_stage("imgexp.train", args)
    study = _study(tmp_path)
    assert study.trials[1].state == TrialState.FAIL
    finished = study.get_trials(deepcopy=False, states=FINISHED)
    assert len(finished) == 2
    retry = [t for t in finished if t.system_attrs.get("failed_trial") == 1]
    assert len(retry) == 1 and retry[0].params == study.trials[1].params

