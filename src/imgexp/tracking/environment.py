"""The Python environment a run was made in, and the warning when a run is repeated in another.

`requirements.lock` (made by `make lock`) pins every package; `make install` installs exactly
that set and checks it with `python -m imgexp.tracking.environment` (also run by CI).
run_info.json records the lock's hash and every installed version, so that a relaunch
(`--config-path RUN/.hydra`) or a resume from RUN/checkpoints/ can tell which packages moved.
"""

import hashlib
import json
import logging
import sys
from importlib.metadata import distributions
from pathlib import Path

from omegaconf import DictConfig
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from imgexp.errors import ImgexpError
from imgexp.paths import PROJECT_ROOT

log = logging.getLogger(__name__)

LOCK_FILE = PROJECT_ROOT / "requirements.lock"
# what a venv brings or builds with, and the project itself: not pinned by the lock
NOT_LOCKED = frozenset({"pip", "setuptools", "wheel", "imgexp"})

_warned: set[Path] = set()  # source runs already warned about in this process


def lock_hash(path: Path = LOCK_FILE) -> str | None:
    """sha256 of the lock file's bytes; None where imgexp is installed without its clone."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def installed_versions() -> dict[str, str]:
    """Every distribution importable here, by canonical name (the first one found wins, as
    importlib.metadata.version does)."""
    found: dict[str, str] = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonicalize_name(name), dist.version)
    return dict(sorted(found.items()))


def environment_hash(packages: dict[str, str]) -> str:
    """A short name for a set of installed versions: equal sets, equal hashes."""
    text = "\n".join(f"{name}=={v}" for name, v in sorted(packages.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def environment_info() -> dict:
    """What run_info.json records about the environment."""
    packages = installed_versions()
    return {"lock_hash": lock_hash(), "env_hash": environment_hash(packages),
            "packages": packages}


def locked_versions(path: Path = LOCK_FILE) -> dict[str, str]:
    """name -> version of each `name==version` pin in a pip-compile lock file."""
    pins = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].rstrip(" \\").strip()
        if not line or line.startswith("-"):  # comments, --hash continuation lines, options
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise ImgexpError(f"{path}:{number}: not a pin ({str(exc).splitlines()[0]}): "
                              "regenerate it with `make lock`") from exc
        pinned = [s.version for s in req.specifier if s.operator == "=="]
        if len(pinned) != 1 or (req.marker and not req.marker.evaluate()):
            continue
        pins[canonicalize_name(req.name)] = pinned[0]
    return pins


def differences(recorded: dict[str, str], current: dict[str, str],
                ignore: frozenset[str] = frozenset()) -> list[str]:
    """`name old -> new` for each package whose version is not the same in both."""
    names = sorted((set(recorded) | set(current)) - ignore)
    return [f"{n} {recorded.get(n, 'absent')} -> {current.get(n, 'absent')}" for n in names
            if recorded.get(n) != current.get(n)]


def source_runs(cfg: DictConfig) -> list[Path]:
    """The run directories this launch repeats: the one whose .hydra/ it was composed from
    (`--config-path RUN/.hydra`) and the one whose checkpoint it resumes (RUN/checkpoints/)."""
    from hydra.core.hydra_config import HydraConfig

    runs = []
    if HydraConfig.initialized():
        for source in HydraConfig.get().runtime.config_sources:
            if source.provider == "main" and source.schema == "file" \
                    and Path(source.path).name == ".hydra":
                runs.append(Path(source.path).resolve().parent)
    ckpt = cfg.get("ckpt_path")
    if ckpt and Path(ckpt).parent.name == "checkpoints":
        runs.append(Path(ckpt).resolve().parent.parent)
    return list(dict.fromkeys(runs))


def warn_if_environment_differs(cfg: DictConfig) -> None:
    """Warn once per source run when its recorded package versions differ from this one's."""
    for run in source_runs(cfg):
        info_file = run / "run_info.json"
        if run in _warned or not info_file.is_file():
            continue
        info = json.loads(info_file.read_text())
        recorded = {canonicalize_name(k): v for k, v in (info.get("packages") or {}).items()}
        current = installed_versions()
        if "env_hash" not in info:  # an older run_info lists only its main packages
            current = {k: v for k, v in current.items() if k in recorded}
        if changed := differences(recorded, current, NOT_LOCKED):
            _warned.add(run)
            log.warning("%s was made in another environment; these packages differ (recorded "
                        "-> now), so results may too: %s. `make install` installs the locked "
                        "set (see README, Reproducible relaunch)", run, ", ".join(changed))


def check_installed(lock: Path = LOCK_FILE) -> list[str]:
    """The differences between the lock and what is installed (none after `make install`)."""
    return differences(locked_versions(lock), installed_versions(), NOT_LOCKED)


def main(argv: list[str]) -> int:
    lock = Path(argv[0]) if argv else LOCK_FILE
    try:
        changed = check_installed(lock)
    except (ImgexpError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if changed:
        print(f"the installed packages differ from {lock} (locked -> installed): "
              f"{', '.join(changed)}. Rebuild the venv: rm -rf .venv && make install",
              file=sys.stderr)
        return 1
    print(f"installed packages equal {lock} ({len(locked_versions(lock))} pins)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
