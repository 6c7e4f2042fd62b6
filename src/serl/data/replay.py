"""Replay buffers: the shared insert/sample interface and the plain ring buffer."""

from __future__ import annotations

import abc
import threading
from typing import Any

import numpy as np

from serl.data.schema import (
    Batch,
    Episode,
    Schema,
    check_capacity,
    check_episode,
    check_transitions,
    make_batch,
)


class Buffer(abc.ABC):
    """Insert transitions or whole episodes (validated first), sample batches uniformly.

    Every insert checks all of its input before touching the buffer, so a bad field raises a
    ValueError naming it and leaves the buffer unchanged. Inserts and samples hold a lock:
    the learner samples while a transport thread inserts.
    """

    def __init__(self, schema: Schema, capacity: int, obs_horizon: int = 1) -> None:
        check_capacity(capacity, obs_horizon)
        self.schema = schema
        self.capacity = int(capacity)
        self.obs_horizon = int(obs_horizon)
        self._lock = threading.Lock()

    def insert(
        self,
        observations: Any,
        actions: Any,
        rewards: Any,
        terminated: Any,
        truncated: Any,
        next_observations: Any,
    ) -> None:
        """Insert one transition (observations are stacked [T, ...] when obs_horizon T > 1)."""
        t = check_transitions(
            self.schema,
            self.obs_horizon,
            observations,
            actions,
            rewards,
            terminated,
            truncated,
            next_observations,
            batched=False,
        )
        with self._lock:
            self._add_transitions(t)

    def insert_many(
        self,
        observations: Any,
        actions: Any,
        rewards: Any,
        terminated: Any,
        truncated: Any,
        next_observations: Any,
    ) -> None:
        """Insert n transitions given with a leading axis, in order."""
        t = check_transitions(
            self.schema,
            self.obs_horizon,
            observations,
            actions,
            rewards,
            terminated,
            truncated,
            next_observations,
            batched=True,
        )
        with self._lock:
            self._add_transitions(t)

    def insert_episode(self, episode: Episode) -> None:
        """Insert a whole episode given frame by frame (observations [L+1, ...], no time axis)."""
        ep = check_episode(self.schema, episode)
        with self._lock:
            self._add_episode(ep)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """Sample `batch_size` stored transitions uniformly (with replacement)."""
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        if not isinstance(rng, np.random.Generator):
            raise TypeError("rng: expected a numpy Generator (np.random.default_rng(seed))")
        return self._sample(int(batch_size), rng)

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of transitions that can be sampled."""

    @property
    @abc.abstractmethod
    def nbytes(self) -> int:
        """Bytes held by the stored data (preallocated arrays count in full)."""

    @abc.abstractmethod
    def _add_transitions(self, t: dict[str, Any]) -> None:
        """Store checked transitions (leading axis n); called with the lock held."""

    @abc.abstractmethod
    def _add_episode(self, ep: Episode) -> None:
        """Store a checked episode; called with the lock held."""

    @abc.abstractmethod
    def _sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """Draw a batch; takes the lock itself."""

    def _empty_error(self) -> ValueError:
        return ValueError(f"cannot sample from an empty {type(self).__name__}")


class ReplayBuffer(Buffer):
    """Ring buffer that stores each transition's observations and next observations in full.

    The simple choice for state observations; for images use `FrameReplayBuffer`, which
    stores each frame once.
    """

    def __init__(self, schema: Schema, capacity: int, obs_horizon: int = 1) -> None:
        super().__init__(schema, capacity, obs_horizon)
        time = (obs_horizon,) if obs_horizon > 1 else ()

        def obs_arrays() -> dict[str, np.ndarray]:
            # np.zeros maps pages lazily: a large, mostly empty buffer costs little memory.
            return {
                k: np.zeros((capacity, *time, *s.shape), s.np_dtype) for k, s in schema.observations
            }

        self._obs = obs_arrays()
        self._next_obs = obs_arrays()
        self._actions = np.zeros((capacity, *schema.action_shape), np.float32)
        self._rewards = np.zeros(capacity, np.float32)
        self._terminated = np.zeros(capacity, bool)
        self._truncated = np.zeros(capacity, bool)
        self._head = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        """Bytes of the preallocated arrays."""
        arrays = [
            *self._obs.values(),
            *self._next_obs.values(),
            self._actions,
            self._rewards,
            self._terminated,
            self._truncated,
        ]
        return sum(a.nbytes for a in arrays)

    def _add_transitions(self, t: dict[str, Any]) -> None:
        n = len(t["rewards"])
        keep = slice(max(0, n - self.capacity), n)  # older rows would be overwritten anyway
        slots = (self._head + np.arange(keep.stop - keep.start)) % self.capacity
        for k in self._obs:
            self._obs[k][slots] = t["observations"][k][keep]
            self._next_obs[k][slots] = t["next_observations"][k][keep]
        self._actions[slots] = t["actions"][keep]
        self._rewards[slots] = t["rewards"][keep]
        self._terminated[slots] = t["terminated"][keep]
        self._truncated[slots] = t["truncated"][keep]
        self._head = (self._head + len(slots)) % self.capacity
        self._size = min(self._size + len(slots), self.capacity)

    def _add_episode(self, ep: Episode) -> None:
        self._add_transitions(ep.transitions(self.obs_horizon))

    def _sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        with self._lock:
            if self._size == 0:
                raise self._empty_error()
            idx = rng.integers(0, self._size, size=batch_size)
            return make_batch(
                {k: v[idx] for k, v in self._obs.items()},
                self._actions[idx],
                self._rewards[idx],
                self._terminated[idx],
                self._truncated[idx],
                {k: v[idx] for k, v in self._next_obs.items()},
            )
