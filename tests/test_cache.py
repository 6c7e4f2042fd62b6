"""The cache on this machine: compiled programs kept within their size, a user's settings win."""

import os
import subprocess
import sys

from serl.cache import prune


def test_prune_deletes_the_oldest_files_down_to_half_past_the_limit(tmp_path) -> None:
    for i in range(10):  # 100 bytes each, file 0 the oldest
        path = tmp_path / f"program-{i}"
        path.write_bytes(b"x" * 100)
        os.utime(path, (1_000 + i, 1_000 + i))
    prune(tmp_path, max_bytes=1_000)  # at the limit: nothing goes
    assert len(list(tmp_path.iterdir())) == 10
    prune(tmp_path, max_bytes=900)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"program-{i}" for i in range(6, 10)]
    prune(tmp_path / "missing", max_bytes=0)  # no cache yet: nothing to do


def test_every_serl_process_compiles_into_the_cache_a_user_may_move(tmp_path) -> None:
    script = (
        "from serl.cache import enable_compilation_cache; enable_compilation_cache(); "
        "import jax, jax.numpy as jnp; jax.jit(lambda x: x * 2)(jnp.ones(3)).block_until_ready()"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    ours = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, "SERL_CACHE_DIR": str(tmp_path / "serl")},
        check=True,
        timeout=120,
    )
    assert ours.returncode == 0 and list((tmp_path / "serl" / "jax").iterdir())
    theirs = tmp_path / "theirs"
    subprocess.run(
        [sys.executable, "-c", script],
        env={
            **env,
            "SERL_CACHE_DIR": str(tmp_path / "unused"),
            "JAX_COMPILATION_CACHE_DIR": str(theirs),
        },
        check=True,
        timeout=120,
    )
    assert list(theirs.iterdir()) and not (tmp_path / "unused").exists()


def test_a_process_that_imported_jax_first_still_gets_the_cache(tmp_path) -> None:
    script = (
        "import jax, jax.numpy as jnp; from serl.cache import enable_compilation_cache; "
        "enable_compilation_cache(); jax.jit(lambda x: x + 1)(jnp.ones(3)).block_until_ready()"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env["SERL_CACHE_DIR"] = str(tmp_path)
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=120)
    assert list((tmp_path / "jax").iterdir())
