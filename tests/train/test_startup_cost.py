"""A default training run pays only for what it uses (issue 20): W&B is opt-in, Optuna is
imported by an Optuna trial only, the libraries are imported with the garbage collector
paused (then frozen), and the process exits without the interpreter's final garbage collection
over every object the libraries made (gc.freeze registered at exit)."""

import json
import os
import subprocess
import sys

# an atexit handler registered before the run executes after the run's own (LIFO): it sees the
# process as the interpreter is about to finalise it
# collections that ran while imgexp.train.fit was importing (in sys.modules, not yet executed
# to its end): the walks over torch's and Lightning's objects the paused collector saves
PROBE = """
import atexit, gc, json, runpy, sys
walks = []
def count(phase, info):
    fit = sys.modules.get("imgexp.train.fit")
    if phase == "start" and fit is not None and not hasattr(fit, "fit_and_test"):
        walks.append(info["generation"])
gc.callbacks.append(count)
"""
SCRIPT = PROBE + """
def seen():
    print(json.dumps({"frozen": gc.get_freeze_count(), "walks_while_importing": len(walks),
                      **{m: m in sys.modules for m in ("wandb", "optuna", "sqlalchemy")}}))
atexit.register(seen)
sys.argv = ["imgexp-train", *sys.argv[1:]]
runpy.run_module("imgexp.train", run_name="__main__")
"""


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "WANDB_MODE": "offline"}


def _run(tmp_path, data_dir, *overrides) -> dict:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, "trainer=debug", "augmentation=none",
                           "data.image_size=16", "trainer.enable_progress_bar=false",
                           f"paths.data_dir={data_dir}", f"hydra.run.dir={tmp_path}",
                           *overrides], capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_default_run_imports_neither_wandb_nor_optuna_and_freezes_at_exit(tmp_path, data_dir):
    seen = _run(tmp_path, data_dir)
    assert seen == {"frozen": seen["frozen"], "walks_while_importing": 0, "wandb": False,
                    "optuna": False, "sqlalchemy": False}
    assert seen["frozen"] > 0
    assert not (tmp_path / "wandb").exists()  # no W&B run was started either


def test_the_probe_sees_the_walks_an_import_with_the_collector_on_makes():
    """The control of walks_while_importing == 0 above: the same import, not paused."""
    script = PROBE + "import imgexp.train.fit\nprint(len(walks))"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env=_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.strip().splitlines()[-1]) > 10
