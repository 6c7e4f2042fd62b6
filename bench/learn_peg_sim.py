"""The real-robot path learns: peg insertion through the robot server, in simulated robot time.

    .venv/bin/python bench/learn_peg_sim.py [--seeds 0 1 2] [--time-scale 2] [serl-train-flags]

Per seed it starts `serl robot-server --backend sim --scene peg --time-scale S` on a free port,
then `serl train serl/FrankaPegInsertSim-v0` against it (the recipe: DrQ on cached camera
features, 20 demos the scripted expert records through the server first, evaluation between
training episodes on the same arm). From eval.csv and episodes.csv: env steps, minutes of robot
time (the server's clock from the first training episode: resets, evaluations and waits for the
learner included), control minutes (env steps at 10 Hz) and wall minutes to 90% evaluation
success, and the share of control steps that overran their period (a scale the machine cannot
hold shows there). Writes bench/results/learn_peg_sim.json and .png.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
from pathlib import Path

from common import RESULTS, median_or_none, run_summary, start_sim_robot_server, write_result

from serl.train.reports import plot_learning_curves

ENV_ID = "serl/FrankaPegInsertSim-v0"
TARGET_SUCCESS = 0.9
TARGET_ROBOT_MINUTES = 30.0  # the original's real peg insertion: 100% after ~30 minutes
CONTROL_HZ = 10.0


def read_episodes(path: Path) -> list[dict[str, float]]:
    """episodes.csv's rows with the robot columns as floats."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    keys = ("env_step", "overrun_rate", "robot_clock_start_s", "robot_clock_end_s")
    return [{k: float(r[k]) for k in keys if r.get(k)} for r in rows]


def robot_minutes_at(episodes: list[dict[str, float]], env_step: int) -> float | None:
    """Minutes on the robot's clock from the first training episode's start to the end of the
    last one finished by `env_step` (a robot is evaluated after the episode its step falls in,
    and eval.csv names that episode's last step)."""
    clocked = [e for e in episodes if "robot_clock_end_s" in e]
    done = [e for e in clocked if e["env_step"] <= env_step]
    if not done:
        return None
    return round((done[-1]["robot_clock_end_s"] - clocked[0]["robot_clock_start_s"]) / 60, 2)


def run_seed(seed: int, out: Path, time_scale: float, extra: list[str]) -> dict[str, object]:
    """Serve, train one seed against the server, summarise."""
    run_dir = out / f"seed{seed}"
    if not (run_dir / "learning_curve.png").exists():  # finished earlier: summarise, not retrain
        out.mkdir(parents=True, exist_ok=True)
        server, url = start_sim_robot_server(
            ["--scene", "peg", "--time-scale", str(time_scale)], out / f"server_seed{seed}.log"
        )
        env = {**os.environ, "SERL_ROBOT_URL": url}
        cmd = [
            *(sys.executable, "-m", "serl.cli", "train", ENV_ID, "--seed", str(seed)),
            *("--run-dir", str(run_dir), "--no-video", *extra),
        ]
        print("$", " ".join(cmd), flush=True)
        try:
            code = subprocess.run(cmd, env=env).returncode
        finally:
            server.terminate()
            server.wait(timeout=30)
    else:
        print(f"{run_dir}: finished run, summarising it", flush=True)
        code = 0
    summary, hit = run_summary(seed, code, run_dir, TARGET_SUCCESS)
    rows = summary["evaluations"]
    episodes = read_episodes(run_dir / "episodes.csv")
    overruns = [e["overrun_rate"] for e in episodes if "overrun_rate" in e]
    return {
        **summary,
        "robot_minutes_to_90": robot_minutes_at(episodes, hit["env_step"]) if hit else None,
        "control_minutes_to_90": round(hit["env_step"] / CONTROL_HZ / 60, 2) if hit else None,
        "wall_minutes_to_90": round(hit["wall_s"] / 60, 2) if hit else None,
        "last_three_mean_success": round(statistics.mean(r["success_rate"] for r in rows[-3:]), 3)
        if rows
        else None,
        "training_episodes": len(episodes),
        "mean_overrun_rate": round(statistics.mean(overruns), 3) if overruns else None,
    }


def main() -> None:
    """Train every seed, then write bench/results/learn_peg_sim.json and a PNG."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--time-scale", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_learn_peg_sim"))
    parser.add_argument("--name", default="learn_peg_sim", help="results file (a variant's)")
    args, flags = parser.parse_known_args()  # the rest: serl train flags
    out = args.out / args.name
    runs = [run_seed(s, out, args.time_scale, flags) for s in args.seeds]
    median_robot = median_or_none([r["robot_minutes_to_90"] for r in runs])
    plot_learning_curves(
        {f"seed {r['seed']}": r["evaluations"] for r in runs},
        RESULTS / f"{args.name}.png",
    )
    write_result(
        args.name,
        {
            "env_id": ENV_ID,
            "time_scale": args.time_scale,
            "train_flags": flags,
            "seeds": args.seeds,
            "seeds_reaching_90": sum(r["env_steps_to_90"] is not None for r in runs),
            "median_env_steps_to_90": median_or_none([r["env_steps_to_90"] for r in runs]),
            "median_robot_minutes_to_90": median_robot,
            "median_wall_minutes_to_90": median_or_none([r["wall_minutes_to_90"] for r in runs]),
            "target": {"robot_minutes": TARGET_ROBOT_MINUTES, "success": TARGET_SUCCESS},
            "meets_target": median_robot is not None and median_robot <= TARGET_ROBOT_MINUTES,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
