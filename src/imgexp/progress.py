"""Progress of the long loops (files checked, features computed, images predicted...).

On a terminal: tqdm's live bar. In a log (output redirected to a file, a SLURM log, CI): a bar
redrawn with carriage returns turns into one enormous line or a narrow wrapped column, so the
same loop writes one plain log line every tenth of the way instead. Each stage switches it off
with its `progress` option (`<stage>.progress=false`; `trainer.enable_progress_bar=false` for
training, whose per-epoch lines are imgexp.training.progress).
"""

import io
import logging
import sys
from typing import TextIO

from tqdm.auto import tqdm

log = logging.getLogger("imgexp.progress")
LINES_PER_LOOP = 10
LINE_FORMAT = "{desc}: {percentage:3.0f}% ({n_fmt}/{total_fmt} {unit}) [{elapsed}<{remaining}]"


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether `stream` (stderr by default, where tqdm writes) is shown live to a person."""
    stream = stream if stream is not None else sys.stderr
    return bool(getattr(stream, "isatty", None)) and stream.isatty()


class _LogLines(tqdm):
    """tqdm's counting and timing, shown as a log line at each tenth of the total (and once at
    the end) instead of a redrawn bar."""

    def __init__(self, *args, **kwargs):
        self._shown = 0
        kwargs["file"] = io.StringIO()  # what tqdm itself writes (line ends) goes nowhere
        super().__init__(*args, mininterval=0, miniters=1, bar_format=LINE_FORMAT, **kwargs)

    def display(self, msg=None, pos=None):
        if msg is not None or not self.total:  # clearing the line / nothing to say a share of
            return
        step = min(LINES_PER_LOOP, int(self.n * LINES_PER_LOOP / self.total))
        if step > self._shown:
            self._shown = step
            log.info("%s", self.format_meter(**self.format_dict))


def progress(iterable=None, *, enabled: bool = True, **kwargs) -> tqdm:
    """`tqdm(iterable, **kwargs)` that shows nothing when disabled and log lines in a log."""
    if not enabled:
        return tqdm(iterable, disable=True, **kwargs)
    if is_terminal(kwargs.get("file")):
        return tqdm(iterable, **kwargs)
    return _LogLines(iterable, **kwargs)
