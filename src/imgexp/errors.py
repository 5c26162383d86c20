"""One exception type for problems the user can fix (bad input, bad config).

Entry points print these as a single line instead of a library traceback; everything else
is a bug and keeps its traceback.
"""


class ImgexpError(Exception):
    """An error caused by the user's data or configuration; the message says what to do."""
