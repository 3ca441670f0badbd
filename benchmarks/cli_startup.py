"""How fast does ``clusterspy --help`` start? (target: < 0.5 s on a 2-core machine)

Run: ``.venv/bin/python benchmarks/cli_startup.py``; writes ``benchmarks/results/cli_startup.json``.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "cli_startup.json"


def time_command(argv: list[str], repeats: int = 10) -> list[float]:
    """Wall times [s] of ``repeats`` runs of ``argv`` (after one warm-up run)."""
    subprocess.run(argv, capture_output=True, check=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    exe = shutil.which("clusterspy", path=str(Path(sys.executable).parent)) or "clusterspy"
    times = time_command([exe, "--help"])
    result = {
        "command": f"{exe} --help",
        "median_s": statistics.median(times),
        "max_s": max(times),
        "repeats": len(times),
        "target_s": 0.5,
    }
    result["pass"] = result["median_s"] < result["target_s"]
    print(json.dumps(result, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
