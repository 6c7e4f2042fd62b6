"""Helpers shared by the bench scripts: machine facts and writing results as JSON."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

# $SERL_BENCH_RESULTS: elsewhere than the committed figures (a smoke run, a test)
RESULTS = Path(os.environ.get("SERL_BENCH_RESULTS") or Path(__file__).parent / "results")


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def write_result(name: str, result: dict[str, object]) -> Path:
    """Write bench/results/NAME.json and print it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"machine": machine(), **result}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))
    return path
