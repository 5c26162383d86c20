"""Opt-in, reversible clean-up: move rejected files out of the source tree, and back.

The log is written before anything moves (and rewritten after), so even an interrupted run
can be reversed: restore moves back every logged file still in the quarantine folder, never
overwriting a file that has reappeared at its original place.
"""

import datetime
import json
import logging
import os
import shutil
from pathlib import Path

from imgexp.atomic import write_json_atomic
from imgexp.errors import ImgexpError
from imgexp.paths import inside

log = logging.getLogger(__name__)
LOG_NAME = "quarantine_log.json"


def quarantine(root: Path, rejected: list[tuple[str, str]], run_dir: Path) -> dict:
    """Move each rejected (path, reason) into run_dir/quarantine/<path>; returns the log."""
    folder = run_dir / "quarantine"
    record = {"root": str(root.resolve()), "quarantine": str(folder.resolve()),
              "files": [{"path": p, "reason": r} for p, r in rejected], "restored": None}
    log_path = write_json_atomic(run_dir / LOG_NAME, record)
    for entry in record["files"]:
        source, target = (inside(root, entry["path"], "rejected file"),
                          inside(folder, entry["path"], "rejected file"))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(source, target)
            entry["moved"] = True
        except OSError as exc:
            entry["moved"], entry["error"] = False, str(exc)
            log.warning("could not quarantine %s: %s", source, exc)
    write_json_atomic(log_path, record)
    return record


def find_log(target: str | bool, log_dir: Path) -> Path:
    """The quarantine log named by prepare.restore: a run dir, a log file, or true = latest."""
    if target is True:
        logs = [p for p in log_dir.glob(f"prepare/**/{LOG_NAME}")
                if json.loads(p.read_text()).get("restored") is None]
        if not logs:
            raise ImgexpError(f"no quarantine to restore under {log_dir}/prepare: name the run "
                              "with prepare.restore=/path/to/prepare/run")
        return max(logs, key=lambda p: p.stat().st_mtime)
    path = Path(str(target))
    path = path / LOG_NAME if path.is_dir() else path
    if not path.is_file():
        raise ImgexpError(f"prepare.restore={target}: no {LOG_NAME} there; point it at the run "
                          "directory of the prepare run that quarantined the files")
    return path


def restore(log_path: Path) -> dict:
    """Move every quarantined file back; returns counts. Refuses to overwrite anything."""
    record = json.loads(log_path.read_text())
    if record.get("restored"):
        raise ImgexpError(f"{log_path} was already restored on {record['restored']['at']}")
    root, folder = Path(record["root"]), Path(record["quarantine"])
    restored, conflicts = 0, []
    for entry in record["files"]:
        # the log is a file a user can edit: its paths must stay inside both folders
        source, target = (inside(folder, entry["path"], f"{log_path}: path"),
                          inside(root, entry["path"], f"{log_path}: path"))
        if not os.path.lexists(source):
            continue  # never moved (the move failed or the run stopped first)
        if os.path.lexists(target):
            conflicts.append(str(target))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, target)
        restored += 1
    _remove_empty_folders(folder)
    record["restored"] = {"at": datetime.datetime.now().isoformat(timespec="seconds"),
                          "files": restored, "conflicts": conflicts}
    write_json_atomic(log_path, record)
    if conflicts:
        raise ImgexpError(f"restored {restored} file(s) but {len(conflicts)} now exist at their "
                          f"original place and were left in {folder}: {conflicts[:3]}")
    return {"restored": restored, "log": str(log_path)}


def _remove_empty_folders(folder: Path) -> None:
    for current, _, _ in sorted(os.walk(folder), key=lambda w: -len(w[0])):
        try:
            os.rmdir(current)
        except OSError:  # not empty: something is still quarantined there
            pass
