"""A default training run pays only for what it uses (issue 20): W&B is opt-in, Optuna is
imported by an Optuna trial only, and the process exits without the interpreter's final
garbage collection over every object the libraries made (gc.freeze registered at exit)."""

import json
import os
import subprocess
import sys

# an atexit handler registered before the run executes after the run's own (LIFO): it sees the
# process as the interpreter is about to finalise it
SCRIPT = """
import atexit, gc, json, runpy, sys
def seen():
    print(json.dumps({"frozen": gc.get_freeze_count(),
                      **{m: m in sys.modules for m in ("wandb", "optuna", "sqlalchemy")}}))
atexit.register(seen)
sys.argv = ["imgexp-train", *sys.argv[1:]]
runpy.run_module("imgexp.train", run_name="__main__")
"""


def _run(tmp_path, data_dir, *overrides) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "WANDB_MODE": "offline"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, "trainer=debug", "augmentation=none",
                           "data.image_size=16", "trainer.enable_progress_bar=false",
                           f"paths.data_dir={data_dir}", f"hydra.run.dir={tmp_path}",
                           *overrides], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_default_run_imports_neither_wandb_nor_optuna_and_freezes_at_exit(tmp_path, data_dir):
    seen = _run(tmp_path, data_dir)
    assert seen == {"frozen": seen["frozen"], "wandb": False, "optuna": False,
                    "sqlalchemy": False}
    assert seen["frozen"] > 0
    assert not (tmp_path / "wandb").exists()  # no W&B run was started either
