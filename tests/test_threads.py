"""A run's thread count is fixed from facts (the cores it may use), not inherited from a
launcher: joblib's workers get OMP_NUM_THREADS = cores / n_jobs, and the thread count sets the
order of float sums, so a joblib trial gave other numbers than the same command run alone."""

import pytest
import torch

from imgexp.device import fix_threads, usable_cores
from imgexp.errors import ImgexpError


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_a_launchers_thread_limit_does_not_decide_a_runs_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what joblib's loky workers are started with
    monkeypatch.delenv("IMGEXP_THREADS", raising=False)
    torch.set_num_threads(1)
    assert fix_threads() == usable_cores() == torch.get_num_threads()


def test_imgexp_threads_chooses_them(monkeypatch):
    monkeypatch.setenv("IMGEXP_THREADS", "1")
    torch.set_num_threads(usable_cores())
    assert fix_threads() == 1 == torch.get_num_threads()


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_thread_count_is_one_line(monkeypatch, value):
    monkeypatch.setenv("IMGEXP_THREADS", value)
    with pytest.raises(ImgexpError, match="IMGEXP_THREADS"):
        fix_threads()
