"""Helpers shared by the bench scripts: machine facts and writing results as JSON."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from serl.train.reports import read_eval_csv

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


def first_reaching(rows: list[dict[str, float]], threshold: float) -> dict[str, float] | None:
    """The first evaluation row whose success rate reaches `threshold`."""
    return next((r for r in rows if r["success_rate"] >= threshold), None)


def median_or_none(values: list[float | None]) -> float | None:
    """Median where a missing value (never reached) counts as infinitely slow."""
    m = statistics.median([v if v is not None else float("inf") for v in values])
    return None if m == float("inf") else m


def run_summary(
    seed: int, code: int, run_dir: Path, threshold: float
) -> tuple[dict[str, object], dict[str, float] | None]:
    """What every learning bench reports of a run from its eval.csv, and its first evaluation
    reaching `threshold` (None if none did)."""
    rows = read_eval_csv(run_dir / "eval.csv") if (run_dir / "eval.csv").exists() else []
    hit = first_reaching(rows, threshold)
    summary = {
        "seed": seed,
        "exit_code": code,
        "run_dir": str(run_dir),
        "evaluations": rows,
        "env_steps_to_90": hit["env_step"] if hit else None,
        "final_success_rate": rows[-1]["success_rate"] if rows else None,
    }
    return summary, hit


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sim_robot_server(
    flags: list[str], log: Path | None = None
) -> tuple[subprocess.Popen, str]:
    """`serl robot-server --backend sim FLAGS` on a free port, once /health answers; its URL."""
    from serl.robot.client import RobotClient

    port = free_port()
    cmd = [sys.executable, "-m", "serl.cli", "robot-server", "--backend", "sim", *flags]
    out = log.open("w") if log is not None else subprocess.DEVNULL
    server = subprocess.Popen([*cmd, "--port", str(port)], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        with RobotClient(url, timeout=2.0) as client:
            client.wait_ready(timeout=60.0)
    except Exception:
        server.terminate()
        raise
    return server, url
