"""The Optuna storage behind a sweep, opened the same way by the sweeper and by its trials.

`hydra.sweeper.storage` is a SQLAlchemy URL (`sqlite:///…`, `postgresql+psycopg://…`, any
database Optuna's RDBStorage takes) or `journal:///path/to/study.log`: Optuna's JournalStorage
on one file of a shared file system, for clusters without a database server.

A killed sweep worker is found by Optuna's heartbeat. RDBStorage has one; JournalStorage has
none in Optuna, so `HeartbeatJournalStorage` adds it: a running trial's heartbeat is a system
attribute (one journal line per interval) stamped with the writer's UTC clock, so the machines
sharing a journal need clocks closer than `grace_period` (NTP is far closer than a minute).

Workers started together on an empty database all create Optuna's tables at once, and
PostgreSQL refuses all but one (`duplicate key … pg_type_typname_nsp_index`): opening retries,
and the retry finds the tables made.
"""

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

import optuna
import sqlalchemy.exc
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

JOURNAL = "journal:"
SCHEMA_ATTEMPTS = 5
HEARTBEAT_ATTR = "imgexp:heartbeat"  # ISO time of the last heartbeat of a journal trial


def journal_path(url: str) -> str | None:
    """`journal:///abs/file.log` -> `/abs/file.log` (`journal://rel.log` -> `rel.log`)."""
    if not url.startswith(JOURNAL):
        return None
    return url.removeprefix(JOURNAL).removeprefix("//")


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    def __init__(self, path: str, heartbeat_interval: int | None = None,
                 grace_period: int | None = None,
                 callback: Callable[[optuna.Study, FrozenTrial], None] | None = None) -> None:
        super().__init__(JournalFileBackend(path))
        self.heartbeat_interval, self.grace_period, self.callback = \
            heartbeat_interval, grace_period, callback

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, datetime.now(UTC).isoformat())
        except UpdateFinishedTrialError:  # told (or failed by another worker) since the last beat
            pass

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        grace = self.grace_period or 2 * (self.heartbeat_interval or 0)
        now = datetime.now(UTC)
        return [t._trial_id for t in self.get_all_trials(study_id, deepcopy=False,
                                                         states=(TrialState.RUNNING,))
                if HEARTBEAT_ATTR in t.system_attrs and (
                    now - datetime.fromisoformat(t.system_attrs[HEARTBEAT_ATTR])
                ).total_seconds() > grace]

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self):
        return self.callback


def open_storage(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 callback: Callable[[optuna.Study, FrozenTrial], None] | None = None
                 ) -> BaseStorage:
    """The storage at `url`; with a heartbeat when `heartbeat_interval` is given (the sweeper)."""
    if (path := journal_path(url)) is not None:
        return HeartbeatJournalStorage(path, heartbeat_interval, grace_period, callback)
    def rdb() -> BaseStorage:
        if heartbeat_interval is None:
            return optuna.storages.get_storage(url)
        return RDBStorage(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                          heartbeat_stale_trial_callback=callback)

    for _ in range(SCHEMA_ATTEMPTS - 1):
        try:
            return rdb()
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            time.sleep(random.uniform(0.1, 1.0))  # another worker was creating the schema
    return rdb()
