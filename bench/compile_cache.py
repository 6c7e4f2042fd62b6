"""Process start-up with and without the compilation cache: what a learner, an actor or `serl
eval` spends before its first step, compiling.

For each agent (the state recipe's `sac_demo`, the vision recipe's `drq_cached` on two 128x128
cameras), a fresh Python process creates the agent, takes one update on a recipe-sized batch
and acts once, timed from before the agent exists to the action. It runs three times: with the
cache off (JAX's default), then twice with a new, empty cache directory (`serl.cache`): the
first fills it, the second is what every later process of a run, and every later run, pays.

    .venv/bin/python bench/compile_cache.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from common import write_result

CHILD = r"""
import json, sys, time
import numpy as np
from serl.cache import enable_compilation_cache
if sys.argv[2] == "on":
    enable_compilation_cache()
import jax
from serl.agents import api, get_preset
from serl.agents.common import batch_spec
from serl.agents.policy import sample_actions

name = sys.argv[1]
cameras = name == "drq_cached"
rng = np.random.default_rng(0)
obs = {"state": np.zeros(7, np.float32)}
if cameras:
    obs |= {k: np.zeros((128, 128, 3), np.uint8) for k in ("front", "wrist")}
start = time.perf_counter()
state = api.create(get_preset(name), obs, 4, 0)
n = state.config.sample_size
# a batch as the learner samples it (cached features in place of cameras for drq_cached)
example = batch_spec(state.spec, state.config.encoder).example()
batch_obs = {k: np.repeat(np.asarray(v), n, axis=0) for k, v in example.items()}
batch = {
    "observations": batch_obs, "next_observations": batch_obs,
    "actions": rng.uniform(-1, 1, (n, 4)).astype(np.float32),
    "rewards": np.zeros(n, np.float32), "masks": np.ones(n, np.float32),
    "dones": np.zeros(n, bool), "is_demo": np.zeros(n, bool),
}
state, _ = api.update(state, batch)
jax.block_until_ready(state)
updated = time.perf_counter()
np.asarray(sample_actions(state, obs, jax.random.PRNGKey(0)))  # the actor's first action
print(json.dumps({"update_s": updated - start, "first_step_s": time.perf_counter() - start}))
"""


def start_up(agent: str, cache: str, directory: str) -> dict[str, float]:
    """One fresh process's start-up seconds."""
    env = {**os.environ, "SERL_CACHE_DIR": directory}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, agent, cache],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Measure both agents and write bench/results/compile_cache.json."""
    results = {}
    for agent in ("sac_demo", "drq_cached"):
        with tempfile.TemporaryDirectory() as directory:
            off = start_up(agent, "off", directory)
            cold = start_up(agent, "on", directory)
            warm = start_up(agent, "on", directory)
            entries = os.listdir(os.path.join(directory, "jax"))
        results[agent] = {
            "cache_off_s": round(off["first_step_s"], 2),
            "cache_filling_s": round(cold["first_step_s"], 2),
            "cache_warm_s": round(warm["first_step_s"], 2),
            "warm_update_s": round(warm["update_s"], 2),
            "speedup": round(off["first_step_s"] / warm["first_step_s"], 2),
            "cached_programs": len(entries),
        }
    write_result("compile_cache", {"agents": results})


if __name__ == "__main__":
    main()
