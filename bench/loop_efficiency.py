"""Where a training run's time goes: learner steps/s inside `serl train` against the bare jitted
update of the same agent, measured in the same run on the same machine.

A `serl train` run of the env's recipe takes a fixed number of env steps; its learner writes the
seconds each loop phase took (progress.json `loop_s`: sampling, the update's dispatch,
publishing parameters — which waits for the update —, logging, checkpoints, waiting for env
steps, handling reports; `ingest`: storing actors' batches on the transport's threads) and each
actor reports its own (pace waits, policy, sending; the env is the rest of its total). Right
before and right after each run, in this process, the same agent config takes back-to-back
updates on host numpy batches of the same size (bench/agent_speed.py's measurement, the best of
several windows); the better of the two is that run's bare rate (the ratio errs low). This
machine's speed drifts by tens of percent within minutes (a shared host: the CPU time stolen
from this VM during each run is recorded), so the run is repeated and the median ratio is the
figure. Each run also records the CPU its processes' threads took (XLA's pool, main thread,
others) per learner step, and its `ratio_ceiling`: the best ratio this machine's cores allow,
from the CPU an actor's env step, backbone and policy take alone here plus the bare update's
(evaluation, storing and sampling not counted).

    .venv/bin/python bench/loop_efficiency.py [--env-id ENV_ID] [--env-steps N] [--repeats N]
        [--name NAME] [serl train flags, e.g. --publish-every 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from agent_speed import measure
from common import write_result

from serl.agents import api as agents
from serl.agents.policy import sample_actions
from serl.cli.train import parse_train_args, train_config
from serl.train.config import TrainConfig
from serl.train.envs import env_schema
from serl.train.evaluation import run_env
from serl.train.feature_cache import FeatureCache

TARGET_RATIO = 0.75  # issue 17: the loop keeps >= 75% of the bare update's rate


def run_training(env_id: str, env_steps: int, run_dir: Path, extra: list[str]) -> dict:
    """Train for `env_steps` with the recipe (`extra`: more flags); the learner's final
    progress.json, with the CPU seconds its processes' threads took (`cpu_s`)."""
    cmd = [sys.executable, "-m", "serl.cli", "train", env_id, "--env-steps", str(env_steps)]
    cmd += ["--run-dir", str(run_dir), "--no-video", *extra]
    print("$", " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd)
    seen: dict[tuple[int, int], tuple[str, float]] = {}
    while proc.poll() is None:
        seen.update(thread_cpu_s(proc.pid))
        time.sleep(0.5)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    progress = json.loads((run_dir / "progress.json").read_text())
    progress["cpu_s"] = {}
    for group, cpu in seen.values():
        progress["cpu_s"][group] = round(progress["cpu_s"].get(group, 0.0) + cpu, 2)
    return progress


def thread_cpu_s(root: int) -> dict[tuple[int, int], tuple[str, float]]:
    """{(pid, tid): (group, CPU s so far)} over `root`'s process tree, read from /proc; group:
    the serl command ("learner", "actor", "train") and the thread (XLA's compute pool, the
    main thread, the others)."""
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if argv == [b""]:  # exited (a zombie has no command line): keep its last reading
                continue
            role = argv[argv.index(b"serl.cli") + 1].decode() if b"serl.cli" in argv else "other"
            for tid in os.listdir(f"/proc/{pid}/task"):
                task = Path(f"/proc/{pid}/task/{tid}")
                todo += [int(c) for c in (task / "children").read_text().split()]
                stat = (task / "stat").read_text()
                comm = stat[stat.index("(") + 1 : stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2 :].split()
                kind = "xla" if "XLA" in comm else "main" if int(tid) == pid else "other"
                cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                out[(pid, int(tid))] = (f"{role}/{kind}", cpu)
        except (OSError, ValueError):  # gone meanwhile: its last reading stands
            continue
    return out


def bare_update(cfg: TrainConfig) -> dict:
    """The run's agent config updated back to back on batches shaped as the run's."""
    env = run_env(cfg)
    example, _ = env.reset(seed=0)
    action_dim = int(np.prod(env.action_space.shape))
    env.close()
    return measure(cfg.agent_config, example, action_dim, windows=5, steps=100)


def bare_actor_step(cfg: TrainConfig, steps: int = 200) -> dict:
    """CPU per env step of what an actor must do, alone in this process: the env step (with
    its rendering), the cameras' backbone features if the agent caches them, the policy."""
    env = run_env(cfg)
    obs, _ = env.reset(seed=0)
    cache = FeatureCache.for_schema(getattr(cfg.agent_config, "encoder", None), env_schema(env))
    action_dim = int(np.prod(env.action_space.shape))
    policy = agents.create(cfg.agent_config, obs, action_dim).actor_state()
    key = jax.random.PRNGKey(0)
    seen = obs if cache is None else cache.observation(obs)

    def env_step() -> None:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()

    parts = {
        "env": env_step,
        "features": lambda: None if cache is None else cache.observation(obs),
        "policy": lambda: sample_actions(policy, seen, key),
    }
    out = {}
    for name, call in parts.items():
        call()  # compiled outside the timing
        cpu = time.process_time()
        for _ in range(steps):
            call()
        out[f"{name}_cpu_ms"] = round(1e3 * (time.process_time() - cpu) / steps, 2)
    env.close()
    return out


def cpu_steal_s() -> float:
    """Seconds of CPU the host took from this VM so far, all cores (/proc/stat's steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def measured_run(cfg: TrainConfig, args: argparse.Namespace, extra: list[str]) -> dict:
    """One run between two bare measurements: its summary against the better of them."""
    before = bare_update(cfg)
    steal = cpu_steal_s()
    with tempfile.TemporaryDirectory() as tmp:
        progress = run_training(args.env_id, args.env_steps, Path(tmp) / "run", extra)
    steal = cpu_steal_s() - steal
    after = bare_update(cfg)
    bare = max(before, after, key=lambda b: b["learner_steps_per_s"])
    result = summarise(progress, bare)
    result["bare_update_before_after"] = [
        before["learner_steps_per_s"],
        after["learner_steps_per_s"],
    ]
    result["cpu_steal_s_during_run"] = round(steal, 2)
    return result


def summarise(progress: dict, bare: dict) -> dict:
    """Rates, their ratio and the loop breakdowns as fractions of their loop's wall time."""
    loop = dict(progress["loop_s"])
    ingest = loop.pop("ingest", 0.0)
    before = loop.pop("before_training", 0.0)  # the random steps: no learner step is due
    training_s = sum(loop.values())
    inside = progress["updates"] / training_s
    actors = {}
    for actor, values in progress["actor_loop_s"].items():
        total = values["total_s"]
        phases = {
            k.removesuffix("_s"): v for k, v in values.items() if k not in ("steps", "total_s")
        }
        phases["env_and_rest"] = total - sum(phases.values())
        actors[actor] = {
            "env_steps_per_s": round(values["steps"] / total, 1),
            "fractions": {k: round(v / total, 3) for k, v in phases.items()},
        }
    return {
        "learner_steps": progress["updates"],
        "env_steps": progress["env_steps"],
        "learner_steps_per_s_in_train": round(inside, 2),
        "bare_update_steps_per_s": bare["learner_steps_per_s"],
        "ratio": round(inside / bare["learner_steps_per_s"], 3),
        "learner_training_s": round(training_s, 2),
        "learner_before_training_s": round(before, 2),
        "learner_fractions": {k: round(v / training_s, 3) for k, v in loop.items()},
        "learner_ingest_s": round(ingest, 2),
        # whole command (demos, start-up and the final evaluation included); per learner step
        # the learner's XLA pool should be close to the bare update's process CPU per step
        "cpu_s": progress["cpu_s"],
        "cpu_ms_per_learner_step": {
            k: round(1e3 * v / max(progress["updates"], 1), 2)
            for k, v in sorted(progress["cpu_s"].items())
        },
        "actors": actors,
        "bare_update": bare,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env-id", default="serl/PandaPickCube-v0")
    p.add_argument("--env-steps", type=int, default=6000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--name", default="loop_efficiency")
    args, extra = p.parse_known_args()
    cfg = train_config(parse_train_args([args.env_id, *extra]))
    actor = bare_actor_step(cfg)
    runs = [measured_run(cfg, args, extra) for _ in range(args.repeats)]
    for run in runs:
        # what this machine's cores allow at best: the actor's share of each learner step plus
        # the update's own CPU, before evaluation, storing and sampling cost anything
        update_ms = run["bare_update"]["cpu_ms_per_step"]
        floor = sum(actor.values()) / cfg.updates_per_env_step + update_ms
        best = (os.cpu_count() or 1) * 1e3 / floor
        run["ratio_ceiling"] = round(min(1.0, best / run["bare_update_steps_per_s"]), 3)
    ratios = [r["ratio"] for r in runs]
    result = {
        "env_id": args.env_id,
        "train_flags": extra,
        "ratio_median": statistics.median(ratios),
        "ratios": ratios,
        "target_ratio": TARGET_RATIO,
        "bare_actor_step": actor,
        "runs": runs,
    }
    write_result(args.name, result)


if __name__ == "__main__":
    main()
