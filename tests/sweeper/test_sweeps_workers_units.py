"""The two pieces that let several sweep processes share a study, without processes: who runs
the last slots (is_surplus) and the heartbeat this project adds to JournalStorage."""

import time

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState

from hydra_plugins.imgexp_optuna_sweeper._workers import is_surplus
from imgexp.training.optuna_storage import (
    HEARTBEAT_ATTR,
    HeartbeatJournalStorage,
    journal_path,
    open_storage,
)


def test_two_workers_asking_for_the_last_slot_at_once_run_it_once(tmp_path):
    study = optuna.create_study(storage=open_storage(f"journal://{tmp_path}/s.log"))
    study.tell(study.ask(), 1.0)
    a, b = study.ask(), study.ask()  # two workers saw one slot left (n_trials=2) and asked
    assert not is_surplus(study, a.number, n_trials=2)
    assert is_surplus(study, b.number, n_trials=2)  # whatever order they check in


def test_a_queued_retry_holds_its_slot_against_a_newer_trial(tmp_path):
    study = optuna.create_study(storage=open_storage(f"journal://{tmp_path}/s.log"))
    dead = study.ask()
    study.tell(dead, state=TrialState.FAIL)
    study.enqueue_trial({}, skip_if_exists=False)  # the killed worker's trial, queued again
    fresh = study._storage.create_new_trial(study._study_id)  # another worker asks a new one
    number = study._storage.get_trial(fresh).number
    assert is_surplus(study, number, n_trials=1)  # the queued retry came first: it runs
    retry = study.ask()
    assert retry.number < number and not is_surplus(study, retry.number, n_trials=1)


def test_journal_url_is_a_file_path():
    assert journal_path("journal:///shared/sweeps/study.log") == "/shared/sweeps/study.log"
    assert journal_path("journal://study.log") == "study.log"
    assert journal_path("postgresql+psycopg://u@db/optuna") is None


def test_journal_heartbeat_fails_a_silent_trial_and_queues_it_again(tmp_path):
    storage = open_storage(f"journal://{tmp_path}/s.log", heartbeat_interval=1, grace_period=1,
                           callback=RetryHeartbeatStaleTrialCallback(max_retry=1))
    assert isinstance(storage, HeartbeatJournalStorage)
    study = optuna.create_study(storage=storage)
    alive, silent = study.ask(), study.ask()
    study._storage.record_heartbeat(silent._trial_id)  # its worker then dies
    time.sleep(1.5)
    study._storage.record_heartbeat(alive._trial_id)
    fail_stale_trials(study)
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states[alive.number] == TrialState.RUNNING
    assert states[silent.number] == TrialState.FAIL
    retry = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.WAITING]
    assert [t.system_attrs["failed_trial"] for t in retry] == [silent.number]
    assert HEARTBEAT_ATTR in study.trials[alive.number].system_attrs
    study.tell(alive, 1.0)
    study._storage.record_heartbeat(alive._trial_id)  # a last beat after tell is harmless


def test_a_worker_prunes_against_the_reports_of_another(tmp_path):
    """Two workers open the journal separately (as two machines do): the second one's pruner
    sees the first one's reports and prunes a worse trial at the same epoch."""
    url = f"journal://{tmp_path}/s.log"
    first = optuna.create_study(study_name="s", storage=open_storage(url), direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    good = first.ask()
    good.report(0.9, step=0)
    first.tell(good, 0.9)
    second = optuna.load_study(study_name="s", storage=open_storage(url),
                               pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    bad = second.ask()
    bad.report(0.1, step=0)
    assert bad.should_prune()
    fine = second.ask()
    fine.report(0.95, step=0)
    assert not fine.should_prune()


def test_compare_loads_a_study_named_by_several_workers_once(tmp_path):
    from imgexp.compare.pipeline import load_studies

    url = f"journal://{tmp_path}/s.log"
    optuna.create_study(study_name="s", storage=open_storage(url))
    files = []
    for worker in ("w0", "w1"):
        (tmp_path / worker).mkdir()
        files.append(tmp_path / worker / "optimization_results.yaml")
        files[-1].write_text(f"study_name: s\nstorage: {url}\n")
    assert [s.study_name for s in load_studies(files)] == ["s"]
