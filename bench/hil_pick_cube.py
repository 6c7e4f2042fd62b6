"""Human-in-the-loop sample efficiency on serl/PandaPickCube-v0, headless: (a) no demos,
(b) 20 scripted demos, (c) 20 demos + the simulated human's interventions; 3 seeds each.

Writes bench/results/hil_pick_cube.json (env steps to 90% evaluation success, final success,
intervention rate over time) and PNGs of the learning curves and of the intervention rate.
Expected: (c) <= (b) < (a) in median env steps to 90%. All three use one agent preset,
`sac_hil` by default (Q-filtered cloning, the preset for runs with interventions).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import multiprocessing
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from common import RESULTS, median_or_none, run_summary, write_result

from serl.envs import SimHumanRules
from serl.train.config import recipe
from serl.train.launcher import train
from serl.train.reports import plot_learning_curves, plot_series
from serl.train.run_files import InterventionConfig

TARGET_SUCCESS = 0.9
CONDITIONS = {
    "no_demos": {"num_demos": 0, "random_steps": 1_000, "training_starts": 1_000},
    "demos": {},
    "demos_interventions": {},
}


def intervention_rate_over_time(episodes_csv: Path, bin_steps: int) -> list[list[float]]:
    """[env step at the bin's end, mean intervention rate of the episodes ending in it]."""
    if not episodes_csv.exists():
        return []
    bins: dict[int, list[float]] = {}
    with episodes_csv.open(newline="") as f:
        for row in csv.DictReader(f):
            if row.get("intervention_rate"):
                end = (int(float(row["env_step"])) // bin_steps + 1) * bin_steps
                bins.setdefault(end, []).append(float(row["intervention_rate"]))
    return [[end, round(statistics.mean(v), 4)] for end, v in sorted(bins.items())]


def run(condition: str, seed: int, out: Path, overrides: dict[str, Any]) -> dict[str, object]:
    """Train one seed of one condition and summarise it."""
    run_dir = out / condition / f"seed{seed}"
    cfg = recipe(
        "serl/PandaPickCube-v0",
        seed=seed,
        run_dir=str(run_dir),
        **{**CONDITIONS[condition], **overrides},
    )
    if condition == "demos_interventions":
        InterventionConfig(kind="sim").save(run_dir)
    print(f"== {condition} seed {seed}: {run_dir}", flush=True)
    code = train(cfg, video=False)
    summary, _ = run_summary(seed, code, run_dir, TARGET_SUCCESS)
    return {
        **summary,
        "intervention_rate": intervention_rate_over_time(
            run_dir / "episodes.csv", max(cfg.eval_every // 2, 500)
        ),
    }


def main() -> None:
    """Train every condition and seed, then write the JSON and PNGs."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/bench_hil_pick_cube"))
    parser.add_argument("--preset", default="sac_hil", help="the agent preset of every run")
    parser.add_argument(
        "--agent-overrides",
        type=json.loads,
        default={},
        help="""JSON of preset fields to change ('{"bc_q_filter": true}')""",
    )
    parser.add_argument("--name", default="hil_pick_cube", help="bench/results/NAME.json and .png")
    parser.add_argument("--quick", action="store_true", help="one seed, 2,000 env steps each")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at once (the figures are env steps, not wall time)",
    )
    args = parser.parse_args()
    seeds = args.seeds[:1] if args.quick else args.seeds
    overrides: dict[str, Any] = {"preset": args.preset, "agent_overrides": args.agent_overrides}
    if args.quick:
        overrides.update(env_steps=2_000, eval_every=1_000, eval_episodes=5)
    jobs = [(c, s) for s in seeds for c in CONDITIONS]
    context = multiprocessing.get_context("spawn")  # JAX and fork do not mix
    with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        conditions, job_seeds = [c for c, _ in jobs], [s for _, s in jobs]
        n = len(jobs)
        done = pool.map(run, conditions, job_seeds, [args.out] * n, [overrides] * n)
        by_job = dict(zip(jobs, done, strict=True))
    results = {c: [by_job[(c, s)] for s in seeds] for c in CONDITIONS}

    plot_learning_curves(
        {f"{c} s{r['seed']}": r["evaluations"] for c, runs in results.items() for r in runs},
        RESULTS / f"{args.name}.png",
    )
    rates = {f"seed {r['seed']}": r["intervention_rate"] for r in results["demos_interventions"]}
    if any(rates.values()):
        plot_series(
            {name: ([p[0] for p in pts], [p[1] for p in pts]) for name, pts in rates.items()},
            RESULTS / f"{args.name}_interventions.png",
            ylabel="intervention rate",
        )
    medians = {
        c: median_or_none([r["env_steps_to_90"] for r in runs]) for c, runs in results.items()
    }
    inf = float("inf")
    a, b, c = (medians[k] if medians[k] is not None else inf for k in CONDITIONS)
    write_result(
        args.name,
        {
            "env_id": "serl/PandaPickCube-v0",
            "quick": args.quick,
            "preset": args.preset,
            "agent_overrides": args.agent_overrides,
            "sim_human_rules": dataclasses.asdict(SimHumanRules()),
            "seeds": seeds,
            "target_success": TARGET_SUCCESS,
            "median_env_steps_to_90": medians,
            "median_final_success": {
                k: statistics.median([r["final_success_rate"] or 0.0 for r in runs])
                for k, runs in results.items()
            },
            "expected_order_holds": bool(c <= b < a),
            "runs": results,
        },
    )


if __name__ == "__main__":
    main()
