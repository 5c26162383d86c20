"""Relabel class folders: `{Photo: photo, "*": non_photo}` merges classes (prepare and data).

Keys are folder names whatever YAML or a command-line override made of them: `{0: low}` reads
the key as the int 0, which names the folder `0` (or `00`); `*` stands for every folder not
named. Folders not named, without `*`, keep their own name.
"""

from collections.abc import Mapping

from imgexp.data.names import check_class_names
from imgexp.errors import ImgexpError

OTHER_CLASSES = "*"


def _names_folder(key, name: str) -> bool:
    if isinstance(key, bool):  # `true: x` -> True
        return name.lower() == str(key).lower()
    if isinstance(key, int | float):  # `0: x` -> 0; `007` is read as 7
        try:
            return float(name) == key
        except ValueError:
            return False
    return str(key) == name


def map_labels(class_names: list[str], class_map: Mapping | None, key: str = "class_map",
               ) -> dict[str, str]:
    """class folder -> label. `key` names the option in error messages."""
    label_of: dict[str, str] = {}
    default = None
    unknown = []
    for k, value in dict(class_map or {}).items():
        if value is None or isinstance(value, Mapping | list):
            raise ImgexpError(f"{key}: {k!r} maps to {value!r}; map each folder to a class "
                              f"name, e.g. {{{k}: other}}")
        check_class_names([str(value)], f"{key} value of {k!r}")
        if k == OTHER_CLASSES:
            default = str(value)
            continue
        named = [n for n in class_names if _names_folder(k, n)]
        if not named:
            unknown.append(str(k))
        if len(named) > 1:
            raise ImgexpError(f"{key}: key {k!r} names several folders {named}; "
                              "name each folder in a config file with a quoted key")
        label_of.update({n: str(value) for n in named})
    if unknown:
        raise ImgexpError(f"{key} names class folder(s) {unknown} that do not exist; "
                          f"the folders are {class_names}")
    return {n: label_of.get(n, default if default is not None else n) for n in class_names}
