"""The locked environment: requirements.lock covers pyproject and is what `make` installs;
run_info.json records the lock hash and every version; a relaunch or resume in other versions
warns once naming them; imgexp-compare shows each run's environment hash."""

import hashlib
import json
import logging
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf, open_dict
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from helpers.config import FAST, compose_config
from helpers.sweeps import run_stage
from imgexp.tracking import environment
from imgexp.tracking.environment import (
    LOCK_FILE,
    environment_hash,
    installed_versions,
    locked_versions,
    warn_if_environment_differs,
)
from imgexp.tracking.run_files import write_run_info

REPO = Path(__file__).resolve().parents[2]


def test_the_lock_pins_every_pyproject_requirement_within_its_range_with_hashes():
    """Fails when pyproject.toml gains or narrows a requirement and `make lock` was not run."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = locked_versions(LOCK_FILE)
    for line in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in pins, f"{name} is not in requirements.lock: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (name, pins[name])
    lines = LOCK_FILE.read_text().splitlines()
    unhashed = [line for line, after in zip(lines, lines[1:] + [""], strict=True)
                if "==" in line and not line.startswith(" ")
                and not after.strip().startswith("--hash=sha256:")]
    assert unhashed == []
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


def test_make_installs_exactly_the_lock_and_checks_it():
    """The wiring CI goes through: .ci/run -> make test -> a venv from the lock, verified."""
    assert "make test" in (REPO / ".ci" / "run").read_text()
    makefile = (REPO / "Makefile").read_text().replace("\\\n", " ")
    rules = dict(re.findall(r"^([^\s:#=]+): *([^\n#]*)", makefile, flags=re.M))
    assert "$(STAMP)" in rules["test"] and "$(STAMP)" in rules["train"]
    assert "$(LOCKED)" in rules["$(STAMP)"] and "$(LOCK)" in rules["$(LOCKED)"]
    commands = [shlex.split(c) for c in re.findall(r"^\t(.*)$", makefile, flags=re.M)]
    install = next(c for c in commands if "--require-hashes" in c)
    assert {"--no-deps", "-r", "$(LOCK)"} <= set(install)  # the lock alone, no resolution
    assert ["$(BIN)/python", "-m", "imgexp.tracking.environment", "$(LOCK)"] in commands
    assert re.search(r"^LOCK := requirements.lock$", makefile, flags=re.M)


def test_the_install_check_names_what_differs_from_the_lock(tmp_path, capsys):
    installed = installed_versions()
    lock = tmp_path / "requirements.lock"

    def check(pins: dict, extra: str = "") -> tuple[int, str]:
        lock.write_text("".join(f"{k}=={v} \\\n    --hash=sha256:{'0' * 64}\n"
                                "    # via imgexp (pyproject.toml)\n" for k, v in pins.items())
                        + extra)
        return environment.main([str(lock)]), capsys.readouterr().err

    # another platform's pin (a marker false everywhere) is not expected here
    assert check(installed, "colorama==0.0.1 ; python_version < '3'\n") == (0, "")
    code, err = check({**installed, "pytest": "0.0.1"})
    assert code == 1 and f"pytest 0.0.1 -> {installed['pytest']}" in err
    code, err = check({k: v for k, v in installed.items() if k != "pytest"})
    assert code == 1 and f"pytest absent -> {installed['pytest']}" in err  # not in the lock


def test_run_info_records_the_lock_hash_and_every_installed_version(tmp_path):
    info = json.loads(write_run_info(tmp_path, 1, "m", 0.5).read_text())
    assert info["lock_hash"] == hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()
    assert info["packages"] == installed_versions()
    assert {"pytest", "pandas", "packaging"} <= set(info["packages"])  # not only the main ones
    assert info["env_hash"] == environment_hash(info["packages"])


def fake_run(run_dir: Path, packages: dict, full: bool = True) -> Path:
    (run_dir / "checkpoints").mkdir(parents=True)
    info = {"packages": packages, **({"env_hash": environment_hash(packages)} if full else {})}
    (run_dir / "run_info.json").write_text(json.dumps(info))
    return run_dir


def resume_from(run_dir: Path):
    return OmegaConf.create({"ckpt_path": str(run_dir / "checkpoints" / "last.ckpt")})


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == environment.__name__]


def test_a_resume_in_other_versions_warns_once_naming_the_packages(tmp_path, caplog):
    recorded = {**installed_versions(), "torch": "0.0.1", "gone-package": "1.0"}
    run = fake_run(tmp_path / "run", recorded)
    with caplog.at_level(logging.WARNING):
        warn_if_environment_differs(resume_from(run))
        warn_if_environment_differs(resume_from(run))
    [message] = warnings_of(caplog)
    assert str(run) in message
    assert f"torch 0.0.1 -> {installed_versions()['torch']}" in message
    assert "gone-package 1.0 -> absent" in message
    assert "pandas" not in message  # unchanged packages are not named


def test_the_same_environment_or_an_older_run_info_with_the_same_main_versions_is_quiet(
        tmp_path, caplog):
    same = fake_run(tmp_path / "same", installed_versions())
    older = fake_run(tmp_path / "older", {"torch": installed_versions()["torch"]}, full=False)
    with caplog.at_level(logging.WARNING):
        warn_if_environment_differs(resume_from(same))
        warn_if_environment_differs(resume_from(older))
    assert warnings_of(caplog) == []


@pytest.mark.slow
def test_a_relaunch_from_the_hydra_dir_in_other_versions_warns_once(tmp_path, data_dir):
    """`imgexp-train --config-path RUN/.hydra` as the README says, with RUN's run_info.json
    recording another torch: one warning naming torch, and the new run records this one."""
    run = fake_run(tmp_path / "first", {**installed_versions(), "torch": "0.0.1"})
    cfg = compose_config("train", [*FAST, "trainer=debug", f"paths.data_dir={data_dir}",
                                   "data.image_size=16", "model.backbone.channels=[16,32]"],
                         run)
    with open_dict(cfg):  # as Hydra saves it: no hydra key, output_dir from the launch
        del cfg["hydra"]
        cfg.paths.output_dir = "${hydra:runtime.output_dir}"
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([]))
    again = tmp_path / "again"
    proc = run_stage("imgexp.train", ["--config-path", str(run / ".hydra"), "--config-name",
                                      "config", f"hydra.run.dir={again}"])
    output = proc.stdout + proc.stderr
    assert output.count("was made in another environment") == 1, output[-3000:]
    assert f"torch 0.0.1 -> {installed_versions()['torch']}" in output
    info = json.loads((again / "run_info.json").read_text())
    assert info["packages"]["torch"] == installed_versions()["torch"]


def test_an_unreadable_lock_is_one_line_naming_the_file(tmp_path, capsys):
    lock = tmp_path / "requirements.lock"
    lock.write_text("pytest==8.0\nnot a requirement !!\n")
    assert environment.main([str(lock)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{lock}:2" in err and "make lock" in err
    assert environment.main([str(tmp_path / "missing.lock")]) == 2
    assert "missing.lock" in capsys.readouterr().err
