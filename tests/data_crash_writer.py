"""Crash-test helper: appends deterministic episodes to an episode store until it is killed.

Run as `python data_crash_writer.py STORE`; prints "writing I" before and "done I" after each
append, so a test can kill it while episode I is being written.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from serl.data import Episode, EpisodeStore, Schema

SCHEMA = Schema.create(
    {"front": ((64, 64, 3), "uint8"), "wrist": ((64, 64, 3), "uint8"), "state": ((7,), "float32")},
    action_shape=(4,),
)


def make_episode(index: int) -> Episode:
    """Episode number `index`: the same bytes every time, lengths and endings vary."""
    rng = np.random.default_rng(index)
    n = 30 + index % 11
    return Episode(
        observations={
            "front": rng.integers(0, 256, (n + 1, 64, 64, 3), dtype=np.uint8),
            "wrist": rng.integers(0, 256, (n + 1, 64, 64, 3), dtype=np.uint8),
            "state": rng.normal(size=(n + 1, 7)).astype(np.float32),
        },
        actions=rng.uniform(-1, 1, (n, 4)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32),
        terminated=(np.arange(n) == n - 1) & (index % 2 == 0),
        truncated=(np.arange(n) == n - 1) & (index % 2 == 1),
    )


def main(path: Path) -> None:
    store = (
        EpisodeStore.open(path, writable=True)
        if path.exists()
        else EpisodeStore.create(path, SCHEMA)
    )
    index = len(store)
    while True:
        episode = make_episode(index)
        print(f"writing {index}", flush=True)
        store.append(episode)
        print(f"done {index}", flush=True)
        index += 1


if __name__ == "__main__":
    main(Path(sys.argv[1]))
