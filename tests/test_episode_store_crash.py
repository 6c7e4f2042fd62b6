"""Crash test: a writer killed with SIGKILL mid-episode loses only that episode."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from data_crash_writer import SCHEMA, make_episode

from serl.data import EpisodeStore

HELPER = Path(__file__).with_name("data_crash_writer.py")


def chunks_on_disk(folder: Path) -> bool:
    return any("c" in Path(d).parts for d, _, files in os.walk(folder) if files)


def run_and_kill(path: Path, kill_at: int) -> None:
    """Start the writer; SIGKILL it once episode `kill_at` has chunk files half-written."""
    proc = subprocess.Popen(
        [sys.executable, str(HELPER), str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        for line in proc.stdout:
            if line.split() == ["writing", str(kill_at)]:
                deadline = time.monotonic() + 5
                while not chunks_on_disk(path / "_incomplete") and time.monotonic() < deadline:
                    pass
                os.kill(proc.pid, signal.SIGKILL)
                break
        else:
            pytest.fail(f"writer exited with {proc.wait()} before episode {kill_at}")
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def assert_identical(got, want) -> None:
    for field in ("actions", "rewards", "terminated", "truncated"):
        a, b = getattr(got, field), getattr(want, field)
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), field
    assert got.observations.keys() == want.observations.keys()
    for k, a in got.observations.items():
        b = want.observations[k]
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), k


@pytest.mark.timeout(120)
def test_sigkill_mid_episode_keeps_every_completed_episode_byte_identical(tmp_path):
    path = tmp_path / "store.zarr"
    killed_mid_write = 0
    for kill_at in (3, 5, 7):  # each round reopens the store after the previous kill
        run_and_kill(path, kill_at)
        killed_mid_write += (path / "_incomplete").exists()
        store = EpisodeStore.open(path)
        assert store.schema == SCHEMA
        n = len(store)
        assert n in (kill_at, kill_at + 1)  # the one being written is all or nothing
        for i, episode in enumerate(store):
            assert_identical(episode, make_episode(i))
        if n == kill_at + 1:  # the kill came after the commit: make the next round start here
            kill_at += 1
    assert killed_mid_write >= 1, "no kill landed inside an append; the test proved little"
    with EpisodeStore.open(path, writable=True) as store:  # recovery removes leftovers
        assert not (path / "_incomplete").exists()
        n = len(store)
        assert store.append(make_episode(n)) == n
    assert_identical(EpisodeStore.open(path)[n], make_episode(n))
    np.testing.assert_array_equal(EpisodeStore.open(path)[-1].rewards, make_episode(n).rewards)
