"""Start-up time of the entry points: `imgexp-<stage> --help` and `--cfg job` against the floor,
`python -c "import hydra"` (what any Hydra app pays), measured in one run. Before the heavy
imports moved into the task functions, --help also paid for torch + Lightning (the last row)."""

import subprocess
import sys

from benchmarks.common import median_time


def _timed(args: list[str], repeats: int) -> float:
    def call():
        subprocess.run([sys.executable, *args], check=True, capture_output=True)

    call()  # warm the file cache once
    return median_time(call, repeats)


def run(quick: bool = False) -> dict:
    repeats = 3 if quick else 7
    hydra = _timed(["-c", "import hydra"], repeats)
    figures = {"setup": f"median of {repeats} fresh processes each (one warm-up call first)",
               'python -c "import hydra" s': round(hydra, 3)}
    for label, args in (("imgexp-train --help", ["-m", "imgexp.train", "--help"]),
                        ("imgexp-train --cfg job", ["-m", "imgexp.train", "--cfg", "job"]),
                        ("imgexp-select --help", ["-m", "imgexp.select", "--help"])):
        seconds = _timed(args, repeats)
        figures[f"{label} s"] = round(seconds, 3)
        figures[f"{label} / import hydra"] = round(seconds / hydra, 2)
    figures["import of the training stack (imgexp.train.fit: torch + Lightning) s"] = round(
        _timed(["-c", "import imgexp.train.fit"], repeats), 3)
    return figures
