"""How long the command line takes to answer, beside the import of Gymnasium (issue #10).

Run: ``python -m bench.startup``. Each command runs in a fresh interpreter, best of 5, all in
this one run, so that the ratios compare like with like on a busy machine: ``tabrl --help``,
``tabrl envs``, an unknown option and an unknown environment (one line of error each), against
``python -c "import gymnasium"`` and the floor tabrl stands on (Gymnasium, typer and rich).
"""

from __future__ import annotations

import subprocess
import sys
import time

REPEATS = 5
TABRL = [sys.executable, "-m", "tabrl"]
COMMANDS = {
    'python -c "import gymnasium"': [sys.executable, "-c", "import gymnasium"],
    "import gymnasium, typer, rich": [sys.executable, "-c",
                                      "import gymnasium, typer, rich.console, rich.progress"],
    "tabrl --help": [*TABRL, "--help"],
    "tabrl envs": [*TABRL, "envs"],
    "tabrl train --bogus": [*TABRL, "train", "--bogus"],
    "tabrl train Nope-v0": [*TABRL, "train", "Nope-v0"],
}


def best_time(argv: list[str]) -> float:
    """The shortest wall time of ``REPEATS`` runs of ``argv`` (the least disturbed one)."""
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    seconds = {name: best_time(argv) for name, argv in COMMANDS.items()}
    gym = seconds['python -c "import gymnasium"']
    width = max(map(len, seconds))
    print(f"{'command':<{width}}  {'best of 5':>9}  {'x import gymnasium':>18}")
    for name, took in seconds.items():
        print(f"{name:<{width}}  {took:>8.3f}s  {took / gym:>17.2f}x")


if __name__ == "__main__":
    main()
