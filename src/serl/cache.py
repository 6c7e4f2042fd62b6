"""serl's cache on this machine: converted backbone weights and compiled XLA programs.

It lives in $SERL_CACHE_DIR, else $XDG_CACHE_HOME/serl, else ~/.cache/serl. Everything in it
is made again when missing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

COMPILED_MAX_BYTES = 2 * 2**30  # past this, the oldest compiled programs are deleted


def cache_dir() -> Path:
    """The cache's root directory."""
    root = os.environ.get("SERL_CACHE_DIR")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "serl"


def enable_compilation_cache() -> None:
    """Keep compiled XLA programs in CACHE/jax: a run's learner, actors and video, and the runs
    after it, compile each program once. Every program, however quick to compile: an agent's
    first update is ~100 of them (bench/compile_cache.py). Set as JAX's environment variables,
    so a command that never imports JAX pays nothing and the processes it starts inherit them;
    a user's $JAX_COMPILATION_CACHE_DIR and $JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS win."""
    directory = os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(cache_dir() / "jax"))
    min_seconds = os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    if "jax" in sys.modules:  # imported already: it read its settings then
        import jax

        if jax.config.jax_compilation_cache_dir is None:
            jax.config.update("jax_compilation_cache_dir", directory)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_seconds))
    prune(Path(directory), COMPILED_MAX_BYTES)


def prune(directory: Path, max_bytes: int) -> None:
    """Past `max_bytes`, delete the oldest files down to half of it. Once per process, not per
    program as JAX's own size limit does (a scan of the directory under a lock per write)."""
    files = []
    for f in directory.glob("*") if directory.is_dir() else ():
        try:
            files.append((f.stat(), f))
        except FileNotFoundError:  # another process pruned it
            continue
    total = sum(stat.st_size for stat, _ in files)
    if total <= max_bytes:
        return
    for stat, f in sorted(files, key=lambda entry: entry[0].st_mtime):
        if total <= max_bytes // 2:
            break
        f.unlink(missing_ok=True)  # a process about to read it compiles the program again
        total -= stat.st_size
