"""A throwaway PostgreSQL server for the multi-worker sweep tests: initdb into a temp folder,
listening only on a Unix socket inside it, stopped and removed afterwards.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system user
(created if missing) through `runuser`. The binaries are found on PATH or where Debian's
`postgresql` package puts them (/usr/lib/postgresql/<version>/bin); `.ci/run` installs it.
"""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MISSING = ("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH nor in "
           "/usr/lib/postgresql/*/bin: install Debian's `postgresql` package (.ci/run does)")


def pg_bin_dir() -> Path | None:
    if initdb := shutil.which("initdb"):
        return Path(initdb).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    return ["runuser", "-u", "postgres", "--", *cmd]


@contextmanager
def postgres_server(bin_dir: Path) -> Iterator[str]:
    """Yields the SQLAlchemy URL (psycopg 3) of a fresh server's `postgres` database."""
    root = Path(tempfile.mkdtemp(prefix="imgexp-pg-"))  # short: a socket path has ~100 chars
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    run = {"check": True, "capture_output": True, "text": True, "timeout": 120}
    try:
        subprocess.run(_as_server_user([str(bin_dir / "initdb"), "-D", str(data), "-U",
                                        "postgres", "--auth=trust", "-E", "UTF8"]), **run)
        options = f"-c listen_addresses='' -k {root} -c fsync=off"
        subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
                                        "-l", str(root / "server.log"), "-w", "start"]), **run)
        try:
            yield f"postgresql+psycopg://postgres@/postgres?host={root}"
        finally:
            subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m",
                                            "immediate", "stop"]), capture_output=True)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"could not start PostgreSQL: {exc.stderr or exc.stdout}") from exc
    finally:
        shutil.rmtree(root, ignore_errors=True)
