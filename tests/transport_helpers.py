"""Shared pieces of the transport tests: a thread-safe store of delivered batches, transitions."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import numpy as np

from serl.distributed import Transitions, schema_hash

TOKEN = "test-token-0123456789"
SCHEMA = schema_hash({"observations": {"state": [[4], "float32"]}, "actions": [[2], "float32"]})


def transition(i: int) -> dict:
    """A small transition whose `id` field identifies it."""
    return {
        "observations": {"state": np.full(4, i, np.float32)},
        "actions": np.full(2, -i, np.float32),
        "rewards": np.float32(i),
        "id": np.int64(i),
    }


class Store:
    """What the learner made durable: on_transitions appends here."""

    def __init__(self) -> None:
        self.batches: list[Transitions] = []
        self._lock = threading.Lock()

    def add(self, batch: Transitions) -> None:
        with self._lock:
            self.batches.append(batch)

    def ids(self, actor_id: str | None = None) -> list[int]:
        with self._lock:
            return [
                int(i)
                for b in self.batches
                if actor_id is None or b.actor_id == actor_id
                for i in b.data["id"]
            ]

    def seqs(self, actor_id: str) -> list[int]:
        with self._lock:
            return [b.seq for b in self.batches if b.actor_id == actor_id]

    def wait(self, predicate: Callable[[Store], bool], timeout: float) -> bool:
        """Poll (every 10 ms) until predicate(self) holds."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate(self):
                return True
            time.sleep(0.01)
        return predicate(self)


def check_exactly_once(ids: list[int], expected: range | list[int]) -> None:
    """Every expected id delivered, none twice, nothing else."""
    counts = Counter(ids)
    duplicated = sorted(i for i, n in counts.items() if n > 1)
    missing = sorted(set(expected) - set(counts))
    extra = sorted(set(counts) - set(expected))
    assert not duplicated, f"{len(duplicated)} ids delivered twice, e.g. {duplicated[:5]}"
    assert not missing, f"{len(missing)} ids never delivered, e.g. {missing[:5]}"
    assert not extra, f"{len(extra)} unexpected ids, e.g. {extra[:5]}"
