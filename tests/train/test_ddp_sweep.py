"""An Optuna sweep whose trials train with DDP (`trainer=ddp trainer.accelerator=cpu
trainer.devices=2`): each trial reports to the study once, from rank 0, and the study holds
n_trials trials. Lightning starts rank 1 by re-running the command line, which in a multirun
is the whole sweep: rank 1 became a second sweep, took a trial of its own and trained it as
rank 1 of the first one (imgexp.training.ddp.ddp_job_of_a_sweep)."""

import json

import optuna
import pytest
from optuna.trial import TrialState

from helpers.sweeps import multirun
from imgexp.training.optuna_storage import open_storage

pytestmark = pytest.mark.slow


def test_a_sweep_of_ddp_trials_reports_each_trial_once(tmp_path, data_dir):
    storage, sweep_dir = f"journal://{tmp_path}/study.log", tmp_path / "sweep"
    # 2 trials in one sweep process: the second must launch its own rank 1 again
    out = multirun(tmp_path, data_dir, "trainer=ddp", "trainer.accelerator=cpu",
                   "trainer.devices=2", "trainer.precision=32-true", "test=false",
                   "hydra/sweeper=optuna", f"hydra.sweeper.storage={storage}",
                   "hydra.sweeper.study_name=ddp", "hydra.sweeper.n_trials=2",
                   "optimizer.lr=interval(1e-3,1e-2)", f"hydra.sweep.dir={sweep_dir}")
    log = out.stdout + out.stderr
    assert log.count("Study ddp in") == 1, log[-3000:]  # one sweep: no rank started another

    study = optuna.load_study(study_name="ddp", storage=open_storage(storage))
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert "already reported" not in log  # rank 1 never reports an epoch a second time
    for t in trials:
        assert len(t.values) == 1
        assert sorted(t.intermediate_values) == [0, 1]  # one report per epoch (max_epochs=2)
        job = sweep_dir / str(t.number)
        assert json.loads((job / "metrics.json").read_text())["trial/number"] == t.number
        assert json.loads((job / "run_info.json").read_text())["world_size"] == 2
        assert (job / "train_ddp_process_1.log").is_file()  # rank 1 ran as this job, here
