"""Robot loop over loopback: command round-trip latency and the achieved 10 Hz control rate.

Starts `serl robot-server --backend sim --scene peg` as its own process (as on a lab PC, where
the server and the actor are separate processes), then measures
  1. the round trip of one control step (POST /command answering the state, settle 0) and of
     GET /state: p50 / p99 / max over many calls;
  2. FrankaEnv's fixed-rate loop at 10 Hz with both cameras: achieved period, jitter (standard
     deviation and p99 absolute deviation from 100 ms) and overruns.
Target: step round trip p99 < 10 ms.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
from common import start_sim_robot_server, write_result

from serl.robot.client import RobotClient
from serl.robot.env import FrankaEnv
from serl.robot.tasks import task_config

TARGET_P99_MS = 10.0


def percentiles_ms(samples: list[float]) -> dict[str, float]:
    """p50 / p99 / max / mean of durations given in seconds, in ms."""
    a = np.asarray(samples) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "max_ms": round(float(a.max()), 3),
        "mean_ms": round(float(a.mean()), 3),
        "n": len(samples),
    }


def round_trips(client: RobotClient, n: int) -> dict[str, dict[str, float]]:
    """Time n control-step commands (hold the current pose) and n state reads."""
    s = client.state()
    command, state = [], []
    for _ in range(n):
        t = time.perf_counter()
        client.command(s.position, s.quaternion, settle_s=0.0)
        command.append(time.perf_counter() - t)
        t = time.perf_counter()
        client.state()
        state.append(time.perf_counter() - t)
    return {"command": percentiles_ms(command), "state": percentiles_ms(state)}


def control_loop(url: str, steps: int, hz: float) -> dict[str, float]:
    """Run FrankaEnv (sim peg task, both cameras) with small random actions at `hz`."""
    cfg = task_config(
        "sim_peg_insertion", server_url=url, hz=hz, max_episode_steps=10**6, http_timeout_s=1.0
    )
    env = FrankaEnv(cfg)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    periods, trips, overruns = [], [], 0
    for _ in range(steps):
        _, _, terminated, truncated, info = env.step(rng.uniform(-0.3, 0.3, 6))
        periods.append(info["timing"]["period_s"])
        trips.append(info["timing"]["round_trip_s"])
        overruns += int(info["timing"]["overrun"])
        if terminated or truncated:
            env.reset()
    env.close()
    p = np.asarray(periods[1:])  # the first period starts at reset, not at a tick
    dev = np.abs(p - 1.0 / hz) * 1000.0
    return {
        "hz": hz,
        "steps": steps,
        "achieved_hz": round(float(1.0 / p.mean()), 3),
        "period_mean_ms": round(float(p.mean() * 1000.0), 3),
        "jitter_std_ms": round(float(p.std() * 1000.0), 3),
        "jitter_p99_abs_ms": round(float(np.percentile(dev, 99)), 3),
        "jitter_max_abs_ms": round(float(dev.max()), 3),
        "overruns": overruns,
        "step_round_trip": percentiles_ms(trips),
    }


def main() -> None:
    """Start the server process, measure, write bench/results/robot_loop.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--hz", type=float, default=10.0)
    args = parser.parse_args()

    server, url = start_sim_robot_server(["--scene", "peg", "--camera-size", "128"])
    try:
        client = RobotClient(url, timeout=1.0)
        latency = round_trips(client, args.calls)
        client.close()
        loop = control_loop(url, args.steps, args.hz)
    finally:
        server.terminate()
        server.wait(timeout=10)
    p99 = latency["command"]["p99_ms"]
    print(
        f"step round trip p50 {latency['command']['p50_ms']} ms, p99 {p99} ms "
        f"(target < {TARGET_P99_MS}); {args.hz} Hz loop: jitter std {loop['jitter_std_ms']} ms, "
        f"p99 |dev| {loop['jitter_p99_abs_ms']} ms, overruns {loop['overruns']}/{args.steps}"
    )
    write_result(
        "robot_loop",
        {
            "setup": "serl robot-server --backend sim --scene peg (own process) <-> FrankaEnv / "
            "RobotClient over loopback HTTP; 1 kHz real-time physics; 2x128x128 cameras",
            "round_trip": latency,
            "control_loop": loop,
            "target_p99_ms": TARGET_P99_MS,
            "meets_target": bool(p99 < TARGET_P99_MS),
        },
    )


if __name__ == "__main__":
    main()
