"""A class name becomes a folder name (predict's output/<class>/, prepare's export, select's
export), so it is checked once, where it enters: the class folders and a manifest's labels
(training), a class map's values, a checkpoint's or an ONNX file's metadata (predict, eval,
export). A name that could leave its folder or that one OS cannot create is refused in one line.
"""

import unicodedata
from collections import Counter

from imgexp.errors import ImgexpError

# Windows opens these devices whatever the folder and the extension (CON.txt is CON)
RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
            *(f"LPT{i}" for i in range(1, 10))}
MAX_NAME_BYTES = 255  # one folder name on ext4, XFS, btrfs, APFS, NTFS (UTF-8 or UTF-16 units)


def is_utf8(name: str) -> bool:
    """False for a file name whose bytes are not UTF-8 (Python keeps them as lone surrogates,
    surrogateescape): a CSV or JSON cannot list it, so every stage leaves it out by name."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def name_problem(name) -> str | None:
    """Why `name` cannot be a class folder name, or None."""
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not text"
    if not name:
        return "is empty"
    if "/" in name or "\\" in name:
        return "holds a path separator"
    if name in (".", ".."):
        return "is a relative folder"
    if name.startswith("."):
        return "starts with a dot (a hidden file)"
    if name.startswith("-"):
        return "starts with a dash (read as an option by command-line tools)"
    if not is_utf8(name):
        return "is not valid UTF-8"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"is longer than a folder name can be ({MAX_NAME_BYTES} bytes in UTF-8)"
    # Cc: the C0 and C1 controls and DEL (U+0085 is a line break to some tools)
    if any(unicodedata.category(c) == "Cc" for c in name):
        return "holds a control character"
    if name.split(".")[0].rstrip(" ").upper() in RESERVED:
        return "is a reserved device name on Windows"
    return None


def check_class_names(names, source: str) -> list[str]:
    """`names` unchanged when every one is a safe folder name; `source` says where they came
    from (a file, a key) in the one-line error."""
    if not isinstance(names, list | tuple):
        raise ImgexpError(f"{source}: the class names are a {type(names).__name__}, not a list")
    for name in names:
        if problem := name_problem(name):
            raise ImgexpError(f"{source}: class name {name!r} {problem}; class names become "
                              "folder names: rename it")
    if twice := sorted(n for n, count in Counter(names).items() if count > 1):
        raise ImgexpError(f"{source}: class names {twice} appear more than once; each class "
                          "needs its own name (its own folder): rename them")
    return list(names)
