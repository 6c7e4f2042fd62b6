"""Learning check (slow; run from bench/pendulum_sac.py for all 3 seeds): SAC with the state
preset reaches a mean return >= -250 on gymnasium's Pendulum-v1 within 15k env steps."""

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent / "bench" / "pendulum_sac.py"


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_sac_state_preset_learns_pendulum():
    spec = importlib.util.spec_from_file_location("pendulum_sac", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # Stop at the first evaluation past the threshold: passing is what this test checks.
    result = bench.run_seed(seed=0, evals_after_pass=0)
    assert result["passed"], result["curve"]
