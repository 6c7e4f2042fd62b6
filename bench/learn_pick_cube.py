"""Sample efficiency of the default recipe: `serl train serl/PandaPickCube-v0`, several seeds.

    .venv/bin/python bench/learn_pick_cube.py [--seeds 0 1 2] [--name NAME serl-train-flags]

A variant (e.g. `--name learn_pick_cube_publish_every_10 --publish-every 10`) passes its flags
to every run and writes bench/results/NAME.json and .png. Per seed: env steps and minutes to 90%
evaluation success, the mean of the last five evaluations (does it stay there), and its wall time
to 90% against the time its learner steps until then take back to back (the bare update measured
right before and after each run, the better counting; <= 1.5 means the run is limited by its
updates). Finished runs are summarised again, not retrained.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

from common import RESULTS, median_or_none, run_summary, write_result
from loop_efficiency import bare_update

from serl.cli.train import parse_train_args, train_config
from serl.train.config import TrainConfig
from serl.train.reports import plot_learning_curves

TARGET_SUCCESS = 0.9
TARGET_ENV_STEPS = 20_000
TARGET_MINUTES = 20.0
MAX_WALL_OVER_UPDATE = 1.5  # issue 17: a run is limited by its updates, not by the loop


def run_seed(env_id: str, seed: int, out: Path, extra: list[str]) -> dict[str, object]:
    """Train one seed with the default recipe and summarise its eval.csv."""
    run_dir = out / f"seed{seed}"
    cmd = [
        sys.executable,
        "-m",
        "serl.cli",
        "train",
        env_id,
        "--seed",
        str(seed),
        "--run-dir",
        str(run_dir),
        "--no-video",
        *extra,
    ]
    bare: dict[str, object] = {}
    if (run_dir / "learning_curve.png").exists():  # finished earlier: summarise, not retrain
        print(f"{run_dir}: finished run, summarising it", flush=True)
        code = 0
    else:
        # the bare update right before and after the run: the machine's speed drifts
        cfg = train_config(parse_train_args([env_id, "--seed", str(seed), *extra]))
        before = bare_rate(cfg)
        print("$", " ".join(cmd), flush=True)
        code = subprocess.run(cmd).returncode
        after = bare_rate(cfg)
        bare = {
            "bare_update_before_after": [before, after],
            "bare_update_steps_per_s": max(before, after),
        }
    summary, hit = run_summary(seed, code, run_dir, TARGET_SUCCESS)
    rows = summary["evaluations"]
    return {
        **summary,
        **bare,
        "minutes_to_90": round(hit["wall_s"] / 60, 2) if hit else None,
        # does the policy stay there: the mean over the last five evaluations
        "last_five_mean_success": round(statistics.mean(r["success_rate"] for r in rows[-5:]), 3)
        if rows
        else None,
    }


def bare_rate(cfg: TrainConfig) -> float:
    """The run's update alone, back to back: learner steps/s (the better of two measurements)."""
    return max(bare_update(cfg)["learner_steps_per_s"] for _ in range(2))


def update_bound(runs: list[dict]) -> dict[str, object]:
    """How close each run came to its updates' pace: its wall time to 90% against the time its
    learner steps until then take back to back (the bare update measured around the run; for a
    run summarised again, here, now)."""
    cfg = TrainConfig.load(Path(runs[0]["run_dir"]))
    now = None
    for run in runs:
        steps = run["env_steps_to_90"]
        if steps is None:
            continue
        if "bare_update_steps_per_s" not in run:
            now = now or bare_rate(cfg)
            run["bare_update_steps_per_s"] = now
        update_s = cfg.updates_allowed(steps) / run["bare_update_steps_per_s"]
        run["update_minutes_to_90"] = round(update_s / 60, 2)
        run["wall_over_update_time_to_90"] = round(run["minutes_to_90"] * 60 / update_s, 2)
    return {"max_wall_over_update_time": MAX_WALL_OVER_UPDATE}


def main() -> None:
    """Train every seed, then write bench/results/learn_pick_cube.json and a PNG."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/bench_learn_pick_cube"))
    parser.add_argument("--env-id", default="serl/PandaPickCube-v0")
    parser.add_argument("--quick", action="store_true", help="one seed, 2,000 env steps")
    parser.add_argument("--name", default="learn_pick_cube", help="results file (a variant's)")
    args, flags = parser.parse_known_args()  # the rest: serl train flags, e.g. a variant's
    seeds, extra = (
        (args.seeds[:1], ["--env-steps", "2000", "--eval-every", "1000"])
        if args.quick
        else (args.seeds, [])
    )
    runs = [run_seed(args.env_id, s, args.out / args.name, [*extra, *flags]) for s in seeds]
    median_steps = median_or_none([r["env_steps_to_90"] for r in runs])
    median_minutes = median_or_none([r["minutes_to_90"] for r in runs])
    bound = update_bound(runs)
    plot_learning_curves(
        {f"seed {r['seed']}": r["evaluations"] for r in runs},
        RESULTS / f"{args.name}.png",
    )
    write_result(
        args.name,
        {
            "env_id": args.env_id,
            "train_flags": flags,
            "quick": args.quick,
            "seeds": seeds,
            "seeds_reaching_90": sum(r["env_steps_to_90"] is not None for r in runs),
            "median_env_steps_to_90": median_steps,
            "median_minutes_to_90": median_minutes,
            "target": {
                "env_steps": TARGET_ENV_STEPS,
                "minutes": TARGET_MINUTES,
                "success": TARGET_SUCCESS,
            },
            "update_bound": bound,
            "meets_target": bool(
                median_steps is not None
                and median_steps <= TARGET_ENV_STEPS
                and median_minutes is not None
                and median_minutes <= TARGET_MINUTES
            ),
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
