"""Two `imgexp-train -m` processes on one study, on a real PostgreSQL server and on a
JournalStorage file: together they finish exactly n_trials, none twice; a worker killed with
SIGKILL mid-trial has its trial failed by the heartbeat and re-run by the other one."""

import os
import signal
import subprocess
import sys
import time

import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

from helpers.postgres import MISSING, pg_bin_dir, postgres_server
from helpers.sweeps import run_stage
from helpers.workers import aid, finish, start_worker, worker_args
from imgexp.training.optuna_storage import open_storage

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@pytest.fixture(scope="module")
def postgres_url():
    if (bin_dir := pg_bin_dir()) is None:
        pytest.skip(MISSING)
    pytest.importorskip("psycopg", reason="psycopg (v3) is missing: pip install -e '.[dev]'")
    with postgres_server(bin_dir) as url:
        yield url


@pytest.fixture(params=["postgres", "journal"])
def storage(request, tmp_path):
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"journal://{tmp_path}/study.log"


def _study(storage, name):
    return optuna.load_study(study_name=name, storage=open_storage(storage))


def _job_trials(sweep_dir):
    """Trial numbers whose run finished in this worker's sweep directory (subdir = number)."""
    return {int(d.name) for d in sweep_dir.iterdir() if (d / "metrics.json").is_file()}


def _results(sweep_dir):
    return yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())


@pytest.mark.slow
def test_two_workers_share_the_study_and_finish_exactly_n_trials(tmp_path, data_dir, storage):
    met = tmp_path / "met"
    dirs = [tmp_path / "w0", tmp_path / "w1"]
    procs = [start_worker(worker_args(
        tmp_path, data_dir, f"'{storage}'", "two", 3, f"hydra.sweep.dir={d}",
        *aid("Rendezvous", storage=f"'{storage}'", study_name="two", flag=met))) for d in dirs]
    outs = [finish(p) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outs)

    study = _study(storage, "two")
    trials = study.get_trials(deepcopy=False)
    finished = {t.number for t in trials if t.state in FINISHED}
    assert len(finished) == 3
    assert all(t.user_attrs["error"].startswith("not run") for t in trials
               if t.state == TrialState.FAIL)  # a lost race for the last slot, never a run
    ran = [_job_trials(d) for d in dirs]
    assert ran[0] and ran[1] and not ran[0] & ran[1]  # both worked, no trial ran twice
    assert ran[0] | ran[1] == finished
    assert len(met.read_text().split()) == 2  # two trials were running at the same moment
    # every worker's epochs are reported to the one study the pruner reads
    assert all(t.intermediate_values for t in trials if t.state in FINISHED)
    for d in dirs:  # each worker's summary is the whole study's
        listed = {t["number"] for t in _results(d)["trials"] if t["state"] == "COMPLETE"}
        assert listed == finished


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_retried_by_the_other(tmp_path, data_dir, storage):
    held = tmp_path / "held"
    dirs = [tmp_path / "w0", tmp_path / "w1"]
    procs = [start_worker(worker_args(tmp_path, data_dir, f"'{storage}'", "kill", 2,
                                      f"hydra.sweep.dir={d}", *aid("HoldFirst", flag=held),
                                      grace_period=10))
             for d in dirs]
    try:
        while not held.exists() or len(held.read_text().split()) < 2:
            assert all(p.poll() is None for p in procs), "a worker ended before one was held"
            time.sleep(0.1)
        pid, killed = map(int, held.read_text().split())
        victim = next(i for i, p in enumerate(procs) if p.pid == pid)
        os.killpg(pid, signal.SIGKILL)
    finally:
        outs = [finish(p) for p in procs]
    survivor = 1 - victim
    assert procs[victim].returncode == -signal.SIGKILL
    assert procs[survivor].returncode == 0, outs[survivor][-3000:]

    study = _study(storage, "kill")
    trials = study.get_trials(deepcopy=False)
    assert trials[killed].state == TrialState.FAIL
    assert len([t for t in trials if t.state in FINISHED]) == 2
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == trials[killed].params
    assert retry[0].number in _job_trials(dirs[survivor])
    results = _results(dirs[survivor])
    assert {t["number"] for t in results["trials"]} == {t.number for t in trials}

    out = tmp_path / "compare"
    run_stage("imgexp.compare", [f"dirs=[{dirs[0]},{dirs[1]}]", f"hydra.run.dir={out}"])
    board = pd.read_csv(out / "leaderboard.csv")
    done = board[board.status == "COMPLETE"]  # whichever worker ran them; the killed run: FAIL
    assert set(done.path) == {t.user_attrs["job_dir"] for t in trials if t.state in FINISHED}
    assert done["val/acc_best"].notna().all()


def test_workers_opening_an_empty_database_at_once_all_get_the_storage(postgres_url):
    """Optuna's schema creation races on PostgreSQL (duplicate key pg_type_typname_nsp_index):
    found by the two-worker test, where one worker died at start."""
    import psycopg

    dsn = postgres_url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE DATABASE fresh")
    fresh = postgres_url.replace("/postgres?", "/fresh?")
    code = ("import sys; from imgexp.training.optuna_storage import open_storage; "
            "open_storage(sys.argv[1], heartbeat_interval=1)")
    procs = [subprocess.Popen([sys.executable, "-c", code, fresh], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(o[-1500:] for o in outs)
