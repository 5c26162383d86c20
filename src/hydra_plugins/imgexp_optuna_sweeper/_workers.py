"""Several sweep processes on one study: who may run the study's last trials.

Each process asks for trials while the study has fewer than `n_trials` finished or running
trials, so near the end two processes can ask for the same last slot at once. The storage
numbers new trials one after another under a lock (RDBStorage locks the study row; the journal
is one ordered log), and a trial is visible to every process once `ask` returns, so comparing
each trial with the *lower-numbered* ones gives all processes the same answer: a trial runs
only if fewer than `n_trials` lower-numbered trials are finished, running or queued (WAITING,
e.g. a killed worker's trial queued again). A queued trial counts from the moment it is queued,
so the process that later takes it and a process asking a new trial never both count it out.
"""

import optuna
from optuna.trial import TrialState

CLAIMED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


def is_surplus(study: optuna.Study, number: int, n_trials: int) -> bool:
    """Whether trial `number`, just asked, would take the study past `n_trials`."""
    ahead = sum(t.number < number and t.state in CLAIMED for t in study.get_trials(deepcopy=False))
    return ahead >= n_trials
