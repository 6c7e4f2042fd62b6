"""Actors under Ray against the local launcher: bench/results/ray_scaling.json.

For 1, 2 and 4 simulated actors, the same short `serl train` run (the env's recipe, a fixed
number of env steps, no evaluation) once with the local launcher and once with `--ray local`,
alternating; each run's env steps/s and learner steps/s over its training wall time (the
learner's, from its first step: Ray's and JAX's start-up are reported apart, as the launcher's
whole wall time). On a 2-core machine the learner's update already takes the cores, so more
actors cannot add throughput here: the figures show what Ray costs, not how it scales. The
paper estimate of how many actors one learner can feed divides the transport's measured
capacity (bench/results/transport.json) by an actor's rate: a robot at 10 Hz, a simulated actor
at its env's unpaced speed (bench/results/env_speed.json).

    .venv/bin/python bench/ray_scaling.py [--env-id serl/PandaPickCube-v0] [--env-steps 3000]
        [--actors 1 2 4]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, write_result

ROBOT_HZ = 10.0


def run(env_id: str, env_steps: int, actors: int, ray: bool, work: Path) -> dict[str, object]:
    """One short training run; its rates."""
    run_dir = work / f"{'ray' if ray else 'local'}-{actors}"
    command = [
        sys.executable, "-m", "serl.cli", "train", env_id, "--run-dir", str(run_dir),
        "--actors", str(actors), "--env-steps", str(env_steps), "--eval-every", "1000000",
        "--no-video", *(["--ray", "local"] if ray else []),
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    progress = json.loads((run_dir / "progress.json").read_text())
    train_s = progress["wall_s"]
    return {
        "launcher": "ray" if ray else "local",
        "actors": actors,
        "env_steps": progress["env_steps"],
        "learner_steps": progress["updates"],
        "training_wall_s": round(train_s, 1),
        "command_wall_s": round(wall, 1),
        "env_steps_per_s": round(progress["env_steps"] / train_s, 1),
        "learner_steps_per_s": round(progress["updates"] / train_s, 1),
    }


def feeding_estimate() -> dict[str, object]:
    """How many actors the transport could feed, from its measured capacity."""
    transport = json.loads((RESULTS / "transport.json").read_text())["transitions"]
    env_speed = json.loads((RESULTS / "env_speed.json").read_text())["envs"]
    state = transport["state"]["transitions_per_s"]
    vision = transport["vision_obs_only"]["transitions_per_s"]
    sim_state = env_speed["serl/PandaPickCube-v0"]["steps_per_s"]
    sim_vision = env_speed["serl/PandaPickCubeVision-v0"]["steps_per_s"]
    return {
        "transport_transitions_per_s": {"state": state, "vision": vision},
        "robot_actors_at_10_hz": {"state": int(state / ROBOT_HZ), "vision": int(vision / ROBOT_HZ)},
        "sim_actors_unpaced": {
            "state": round(state / sim_state, 1),
            "vision": round(vision / sim_vision, 1),
            "env_steps_per_s_per_actor": {"state": sim_state, "vision": sim_vision},
        },
        "caveat": (
            "one learner's receive path (loopback, measured on a busy 2-core machine), not its "
            "updates: a learner taking U updates/s at R updates per env step consumes U/R env "
            "steps/s whatever the actors could send"
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default="serl/PandaPickCube-v0")
    parser.add_argument("--env-steps", type=int, default=3000)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for actors in args.actors:
            for ray in (False, True):
                runs.append(run(args.env_id, args.env_steps, actors, ray, Path(tmp)))
                print(json.dumps(runs[-1]), flush=True)
    ratios = {}
    for actors in args.actors:
        local, ray = (next(r for r in runs if r["actors"] == actors and r["launcher"] == k)
                      for k in ("local", "ray"))  # fmt: skip
        ratios[str(actors)] = {
            key: round(ray[key] / local[key], 3)
            for key in ("env_steps_per_s", "learner_steps_per_s", "command_wall_s")
        }
    write_result(
        "ray_scaling",
        {
            "command": "python bench/ray_scaling.py " + " ".join(sys.argv[1:]),
            "env_id": args.env_id,
            "note": (
                "2 cores: the learner's update takes them, so actors beyond one add no "
                "throughput here; ray/local ratios show Ray's cost at equal work"
            ),
            "runs": runs,
            "ray_over_local": ratios,
            "feeding_estimate": feeding_estimate(),
        },
    )


if __name__ == "__main__":
    main()
