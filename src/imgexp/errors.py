"""One exception type for problems the user can fix (bad input, bad config).

Entry points print these as a single line instead of a library traceback; everything else
is a bug and keeps its traceback.
"""

import errno


class ImgexpError(Exception):
    """An error caused by the user's data or configuration; the message says what to do."""


def write_error(exc: BaseException, folder, full_only: bool = False) -> ImgexpError | None:
    """The one-line user error for an OSError raised while writing into `folder`: a full disk
    or (unless `full_only`: a write of unknown place) a folder the user cannot write. None for
    anything else, a bug that keeps its traceback."""
    if not isinstance(exc, OSError):
        return None
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ImgexpError(f"the disk holding {folder} is full ({exc.strerror}): free space "
                           "there or write somewhere else; finished files there are intact")
    if not full_only and exc.errno in (errno.EPERM, errno.EACCES, errno.EROFS):
        return ImgexpError(f"cannot write in {folder} ({exc.strerror}): choose a folder you "
                           "can write to")
    return None
