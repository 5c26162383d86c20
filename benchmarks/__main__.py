"""`make bench` / `python -m benchmarks [name ...] [--quick]`: run the ratio benchmarks and
rewrite their sections of benchmarks/RESULTS.md.

Each benchmarks/bench_<name>.py exposes `run(quick: bool) -> dict` and measures the project
and its baseline in the same process run, so the ratio is meaningful on a noisy machine.
"""

import argparse
import importlib
import json
import platform
import re
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "RESULTS.md"


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def section(name: str, figures: dict, seconds: float) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = "\n".join(f"| {k} | {json.dumps(v) if isinstance(v, dict | list) else v} |"
                     for k, v in figures.items())
    return (f"## {name}\n\n_{stamp}, {platform.machine()} {platform.processor() or ''}, "
            f"took {seconds:.0f} s_\n\n| figure | value |\n| --- | --- |\n{rows}\n")


def replace_section(text: str, name: str, new: str) -> str:
    pattern = re.compile(rf"^## {re.escape(name)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        return pattern.sub(lambda _: new + "\n", text)
    return text.rstrip() + "\n\n" + new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help=f"default: all of {available()}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    args = parser.parse_args()
    for name in args.names or available():
        start = time.perf_counter()
        figures = importlib.import_module(f"benchmarks.bench_{name}").run(quick=args.quick)
        seconds = time.perf_counter() - start
        print(f"{name}: {json.dumps(figures, indent=1)}")
        # re-read: other benchmark runs may have written their sections meanwhile
        text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
        RESULTS.write_text(replace_section(text, name, section(name, figures, seconds)))


if __name__ == "__main__":
    main()
