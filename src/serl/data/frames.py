"""Frame-once replay buffer: each frame is stored once, stacks are rebuilt at sample time.

Layout. The buffer is a ring of `capacity` slots; a slot holds one observation frame (every
key), the frame's position within its episode, and - if the next slot holds the following
frame of the same episode - the transition taken from it (action, reward, terminated,
truncated). An episode of L steps occupies L + 1 consecutive slots, so next_obs frames are
never stored twice. Two invariants make sampling exact:

1. Frames of one episode lie in consecutive slots in step order, so the stack of horizon T
   for the frame in slot i is slots i - min(T-1-s, pos[i]), s = 0..T-1: frames before the
   episode's first stored frame are replaced by that frame (padding with the earliest frame),
   never taken from a previous episode.
2. `valid[i]` is true only while every slot the transition in slot i reads (its obs stack and
   the next frame's stack: slots i - min(T-1, pos[i]) .. i+1) still holds the frames written
   with it. Writing a slot clears `valid` for that slot and for the up to T-1 following
   slots whose stacks reach back into it, so a sample never pairs frames from two episodes or
   from a slot that has been overwritten.

Sampling draws slots uniformly and redraws the invalid ones (uniform over valid transitions),
then gathers every key with one vectorised index. Keys listed in `jpeg_keys` are stored as
JPEG bytes (simplejpeg), encoded once at insert and decoded at sample, outside the lock. Keys
listed in `view_keys` hold K views of each frame ([K, ...]: e.g. the features of K shifted
copies of a camera frame, computed once at insert); a sample takes one view at random, drawn
apart for its observations and next observations (the same view for every frame of a stack).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import simplejpeg

from serl.data.replay import Buffer
from serl.data.schema import Batch, Episode, Schema, as_bits, make_batch


@dataclass(frozen=True)
class JpegCodec:
    """JPEG encoding of uint8 frames [H, W, 1 | 3] with simplejpeg (libjpeg-turbo)."""

    quality: int = 90
    subsampling: str = "444"  # chroma subsampling for RGB: '444' keeps small colour edges

    def __post_init__(self) -> None:
        if not 1 <= self.quality <= 100:
            raise ValueError(f"jpeg quality: must be in [1, 100], got {self.quality}")

    def encode(self, frame: np.ndarray) -> bytes:
        """Encode one frame."""
        gray = frame.shape[-1] == 1
        return simplejpeg.encode_jpeg(
            np.ascontiguousarray(frame),
            quality=self.quality,
            colorspace="GRAY" if gray else "RGB",
            colorsubsampling="Gray" if gray else self.subsampling,
        )

    def decode_into(self, data: bytes, out: np.ndarray) -> None:
        """Decode one frame into `out` (a C-contiguous uint8 [H, W, C] array)."""
        simplejpeg.decode_jpeg(data, colorspace="GRAY" if out.shape[-1] == 1 else "RGB", buffer=out)


@dataclass
class _OpenEpisode:
    """The episode still being inserted transition by transition."""

    slot: int  # slot of its newest frame
    pos: int  # that frame's position in the episode
    stack: dict[str, np.ndarray]  # its stack [T, ...]: what the next transition's obs must equal


class FrameReplayBuffer(Buffer):
    """Replay buffer that stores each observation frame once (optionally as JPEG).

    `capacity` counts frames (slots): full, it holds about capacity * L / (L + 1) transitions
    of episodes of length L (each episode's final frame starts no transition). A transition
    whose observations equal the open episode's last next_observations continues that
    episode (one new frame stored); any other transition starts a new episode, so
    interleaved streams stay exact at the price of extra frames.
    """

    def __init__(
        self,
        schema: Schema,
        capacity: int,
        obs_horizon: int = 1,
        jpeg_keys: Iterable[str] = (),
        jpeg_quality: int = 90,
        view_keys: Iterable[str] = (),
    ) -> None:
        super().__init__(schema, capacity, obs_horizon)
        specs = schema.obs_specs
        self.jpeg_keys = tuple(sorted(set(jpeg_keys)))
        for key in self.jpeg_keys:
            s = specs.get(key)
            if s is None or s.dtype != "uint8" or len(s.shape) != 3 or s.shape[-1] not in (1, 3):
                raise ValueError(f"jpeg_keys: {key!r} is not a uint8 [H, W, 1 | 3] observation key")
        self.view_keys = tuple(sorted(set(view_keys)))
        for key in self.view_keys:
            if key not in specs or key in self.jpeg_keys or len(specs[key].shape) < 2:
                raise ValueError(f"view_keys: {key!r} is not an observation key of [K, ...] views")
        self.codec = JpegCodec(jpeg_quality)
        self._frames = {  # JPEG keys hold one bytes object per slot
            k: np.empty(capacity, object)
            if k in self.jpeg_keys
            else np.zeros((capacity, *s.shape), s.np_dtype)
            for k, s in specs.items()
        }
        self._pos = np.zeros(capacity, np.int64)
        self._valid = np.zeros(capacity, bool)
        self._actions = np.zeros((capacity, *schema.action_shape), np.float32)
        self._rewards = np.zeros(capacity, np.float32)
        self._terminated = np.zeros(capacity, bool)
        self._truncated = np.zeros(capacity, bool)
        self._head = 0  # next slot to write
        self._filled = 0  # slots written at least once
        self._num_valid = 0
        self._jpeg_nbytes = 0
        self._open: _OpenEpisode | None = None

    def __len__(self) -> int:
        return self._num_valid

    @property
    def nbytes(self) -> int:
        """Bytes of the preallocated arrays plus the JPEG byte strings they point to."""
        arrays = [
            *self._frames.values(),
            self._pos,
            self._valid,
            self._actions,
            self._rewards,
            self._terminated,
            self._truncated,
        ]
        return sum(a.nbytes for a in arrays) + self._jpeg_nbytes

    # -- writing -----------------------------------------------------------------------------

    def _add_transitions(self, t: dict[str, Any]) -> None:
        T = self.obs_horizon
        obs, nxt = t["observations"], t["next_observations"]
        if T == 1:  # internally every observation carries a time axis
            obs = {k: v[:, None] for k, v in obs.items()}
            nxt = {k: v[:, None] for k, v in nxt.items()}
        else:
            for k in obs:  # frame-once storage needs next_obs to be obs shifted by one step
                if not np.array_equal(nxt[k][:, :-1], obs[k][:, 1:]):
                    raise ValueError(
                        f"next_observations[{k!r}]: frames 0..T-2 must equal "
                        f"observations[{k!r}] frames 1..T-1 (the stack shifted by one step)"
                    )
        for i in range(len(t["rewards"])):
            o = {k: v[i] for k, v in obs.items()}
            if self._open is not None and all(np.array_equal(o[k], self._open.stack[k]) for k in o):
                slot, pos = self._open.slot, self._open.pos
            else:
                first = _leading_repeats(o)  # padded start: store the repeated frame once
                slots = self._write_frames({k: v[first:] for k, v in o.items()}, first_pos=0)
                slot, pos = int(slots[-1]), T - 1 - first
            next_slot = int(self._write_frames({k: v[i, -1:] for k, v in nxt.items()}, pos + 1)[0])
            row = slice(i, i + 1)
            self._set_transitions(
                np.array([slot]),
                t["actions"][row],
                t["rewards"][row],
                t["terminated"][row],
                t["truncated"][row],
            )
            done = t["terminated"][i] or t["truncated"][i]
            stack = {k: v[i].copy() for k, v in nxt.items()}
            self._open = None if done else _OpenEpisode(next_slot, pos + 1, stack)

    def _add_episode(self, ep: Episode) -> None:
        self._open = None
        drop = max(0, len(ep) + 1 - self.capacity)  # frames the episode itself would overwrite
        slots = self._write_frames({k: v[drop:] for k, v in ep.observations.items()}, drop)
        q = np.arange(len(slots) - 1)
        keep = np.minimum(self.obs_horizon - 1, drop + q) <= q  # stack lies in what was kept
        steps = drop + q[keep]
        self._set_transitions(
            slots[:-1][keep],
            ep.actions[steps],
            ep.rewards[steps],
            ep.terminated[steps],
            ep.truncated[steps],
        )

    def _write_frames(self, frames: dict[str, np.ndarray], first_pos: int) -> np.ndarray:
        """Write n <= capacity consecutive frames of one episode at the head; return their slots."""
        n = len(next(iter(frames.values())))
        N, T = self.capacity, self.obs_horizon
        slots = (self._head + np.arange(n)) % N
        self._invalidate(slots)
        for k in range(min(T - 1, N - n)):
            # The old slot k+1 places past the block reads into it if its stack reaches back
            # more than k frames.
            after = (self._head + n + k) % N
            if self._pos[after] > k:
                self._invalidate(after)
        self._pos[slots] = first_pos + np.arange(n)
        for key, value in frames.items():
            store = self._frames[key]
            if key in self.jpeg_keys:
                old = sum(sys.getsizeof(b) for b in store[slots] if b is not None)
                encoded = np.empty(n, object)
                encoded[:] = [self.codec.encode(f) for f in value]
                store[slots] = encoded
                self._jpeg_nbytes += sum(sys.getsizeof(b) for b in encoded) - old
            else:
                store[slots] = value
        self._head = (self._head + n) % N
        self._filled = min(self._filled + n, N)
        return slots

    def _invalidate(self, slots: np.ndarray | int) -> None:
        self._num_valid -= int(np.count_nonzero(self._valid[slots]))
        self._valid[slots] = False

    def _set_transitions(
        self,
        slots: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> None:
        """Record transitions from freshly written slots (so none of them is valid yet)."""
        self._actions[slots] = actions
        self._rewards[slots] = rewards
        self._terminated[slots] = terminated
        self._truncated[slots] = truncated
        self._valid[slots] = True
        self._num_valid += len(slots)

    # -- sampling ----------------------------------------------------------------------------

    def _sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        N, T = self.capacity, self.obs_horizon
        with self._lock:
            if self._num_valid == 0:
                raise self._empty_error()
            idx = rng.integers(0, self._filled, size=batch_size)
            bad = np.flatnonzero(~self._valid[idx])
            while bad.size:  # rejection keeps the draw uniform over valid transitions
                idx[bad] = rng.integers(0, self._filled, size=bad.size)
                bad = bad[~self._valid[idx[bad]]]
            pos = self._pos[idx][:, None]
            back = np.arange(T - 1, -1, -1)  # distance of each stack frame from the newest
            obs_slots = (idx[:, None] - np.minimum(back, pos)) % N
            next_slots = (idx[:, None] + 1 - np.minimum(back, pos + 1)) % N
            if T == 1:
                obs_slots, next_slots = obs_slots[:, 0], next_slots[:, 0]
            plain = [k for k in self._frames if k not in self.jpeg_keys]
            obs = {k: self._gather(k, obs_slots, rng) for k in plain}
            nxt = {k: self._gather(k, next_slots, rng) for k in plain}
            # Each distinct slot is decoded once, straight into the first row that needs it.
            slots = np.concatenate([obs_slots.ravel(), next_slots.ravel()])
            _, first, inverse = np.unique(slots, return_index=True, return_inverse=True)
            encoded = {k: self._frames[k][slots[first]] for k in self.jpeg_keys}
            rest = (
                self._actions[idx],
                self._rewards[idx],
                self._terminated[idx],
                self._truncated[idx],
            )
        # Byte strings are immutable, so decoding can run while other threads insert.
        source = first[inverse]
        repeats = np.flatnonzero(source != np.arange(len(slots)))
        for k, data in encoded.items():
            rows = np.empty((len(slots), *self.schema.obs_specs[k].shape), np.uint8)
            for row, b in zip(first, data, strict=True):
                self.codec.decode_into(b, rows[row])
            rows[repeats] = rows[source[repeats]]
            obs[k] = rows[: obs_slots.size].reshape(obs_slots.shape + rows.shape[1:])
            nxt[k] = rows[obs_slots.size :].reshape(next_slots.shape + rows.shape[1:])
        return make_batch(obs, *rest, nxt)

    def _gather(self, key: str, slots: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The stored frames at `slots` ([B] or stacks [B, T]); one random view of a view key."""
        store = self._frames[key]
        if key not in self.view_keys:
            return as_bits(store)[slots].view(store.dtype)
        views = rng.integers(0, self.schema.obs_specs[key].shape[0], size=len(slots))
        return as_bits(store)[slots, views if slots.ndim == 1 else views[:, None]].view(store.dtype)


def _leading_repeats(stack: dict[str, np.ndarray]) -> int:
    """Index of the last frame that, with all before it, equals frame 0 in every key."""
    first = 0
    T = len(next(iter(stack.values())))
    while first + 1 < T and all(np.array_equal(v[first + 1], v[0]) for v in stack.values()):
        first += 1
    return first
