"""What stored data looks like (schema, episodes, batches) and how it is checked at the boundary."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np
from numpy.typing import DTypeLike

Batch = dict[str, Any]
"""The batch contract: observations / next_observations (dicts), actions, rewards, masks, dones."""

# bfloat16 (cached image features in memory) is a float too: its conversion to float32 is a
# shift, ~3x faster on a CPU than float16's (numpy and XLA alike).
BFLOAT16 = np.dtype(ml_dtypes.bfloat16)


def is_float(dtype: np.dtype) -> bool:
    """Whether a dtype is a floating-point type (numpy's own or bfloat16)."""
    return dtype.kind == "f" or dtype == BFLOAT16


def as_bits(x: np.ndarray) -> np.ndarray:
    """bfloat16 arrays viewed as uint16 (the same bits), others unchanged: numpy gathers and
    masks its own integer types ~3x faster than ml_dtypes' bfloat16."""
    return x.view(np.uint16) if x.dtype == BFLOAT16 else x


# Keys become Zarr node names in the episode store: keep them portable.
_KEY_RE = re.compile(r"^(?!__)[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class ArraySpec:
    """Shape and dtype of one stored field, per step (no batch or time axis)."""

    shape: tuple[int, ...]
    dtype: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype).name)
        if any(s < 1 for s in self.shape):
            raise ValueError(f"ArraySpec: every dimension must be >= 1, got {self.shape}")
        if np.dtype(self.dtype).kind not in "biu" and not is_float(np.dtype(self.dtype)):
            raise ValueError(f"ArraySpec: dtype must be boolean or numeric, got {self.dtype}")

    @property
    def np_dtype(self) -> np.dtype:
        """The numpy dtype."""
        return np.dtype(self.dtype)


@dataclass(frozen=True)
class Schema:
    """Observation keys with their per-step specs, and the action shape (actions are float32)."""

    observations: tuple[tuple[str, ArraySpec], ...]
    action_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        obs = tuple(sorted((str(k), v) for k, v in dict(self.observations).items()))
        if not obs:
            raise ValueError("Schema: at least one observation key is required")
        for key, spec in obs:
            if not _KEY_RE.match(key):
                raise ValueError(f"Schema: observation key {key!r} must match {_KEY_RE.pattern}")
            if not isinstance(spec, ArraySpec):
                raise TypeError(f"Schema: observations[{key!r}] must be an ArraySpec")
        object.__setattr__(self, "observations", obs)
        object.__setattr__(self, "action_shape", ArraySpec(self.action_shape, "float32").shape)

    @classmethod
    def create(
        cls,
        observations: Mapping[str, tuple[Sequence[int], DTypeLike]],
        action_shape: Sequence[int],
    ) -> Schema:
        """Build from {key: (shape, dtype)} and the action shape."""
        specs = [
            (k, ArraySpec(tuple(shape), np.dtype(dtype).name))
            for k, (shape, dtype) in observations.items()
        ]
        return cls(tuple(specs), tuple(action_shape))

    @classmethod
    def from_example(cls, observations: Mapping[str, Any], action: Any) -> Schema:
        """Infer from one observation dict and one action (float64 vectors become float32)."""
        specs = {}
        for key, value in observations.items():
            arr = np.asarray(value)
            dtype = np.float32 if arr.dtype.kind == "f" else arr.dtype
            specs[key] = (arr.shape, dtype)
        return cls.create(specs, np.shape(action))

    @property
    def obs_specs(self) -> dict[str, ArraySpec]:
        """Observation specs by key."""
        return dict(self.observations)

    @property
    def action(self) -> ArraySpec:
        """The action spec (float32)."""
        return ArraySpec(self.action_shape, "float32")

    @property
    def image_keys(self) -> tuple[str, ...]:
        """Keys holding uint8 images [H, W, C]."""
        return tuple(k for k, s in self.observations if s.dtype == "uint8" and len(s.shape) == 3)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable description (stored in the episode store's root attributes)."""
        return {
            "observations": {
                k: {"shape": list(s.shape), "dtype": s.dtype} for k, s in self.observations
            },
            "action": {"shape": list(self.action_shape), "dtype": "float32"},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Schema:
        """Inverse of `to_json`."""
        obs = {k: (v["shape"], v["dtype"]) for k, v in data["observations"].items()}
        return cls.create(obs, data["action"]["shape"])


def as_field(name: str, value: Any, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """Check one field's shape, dtype and finiteness; return it as `dtype` (a copy only if cast).

    Floating targets accept any real numeric input (float64 -> float32 is fine); integer
    targets (images) accept only lossless casts, so a float image is an error, not a silent
    truncation. Boolean targets (terminated, truncated) accept bools or 0/1 numbers.
    """
    arr = np.asarray(value)
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    if arr.dtype.kind not in "biu" and not is_float(arr.dtype):
        raise ValueError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if dtype.kind == "b":
        if arr.dtype.kind != "b":
            if not np.isin(arr, (0, 1)).all():
                raise ValueError(f"{name}: expected booleans (or 0/1), got values outside {{0, 1}}")
            arr = arr.astype(bool)
        return arr
    if arr.dtype != dtype:
        casting = "safe" if dtype.kind in "iu" else "same_kind"
        if not np.can_cast(arr.dtype, dtype, casting=casting):
            raise ValueError(f"{name}: dtype {arr.dtype} cannot be stored as {dtype}")
        arr = arr.astype(dtype)
    if is_float(dtype) and not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains non-finite values (NaN or inf)")
    return arr


def check_obs(
    name: str, observations: Any, schema: Schema, lead: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """Check an observation dict: exact keys, then each value's shape `lead + spec.shape`."""
    if not isinstance(observations, Mapping):
        raise ValueError(f"{name}: expected a dict of arrays, got {type(observations).__name__}")
    specs = schema.obs_specs
    missing = sorted(set(specs) - set(observations))
    extra = sorted(set(observations) - set(specs))
    if missing or extra:
        raise ValueError(f"{name}: missing keys {missing}, unexpected keys {extra}")
    return {
        k: as_field(f"{name}[{k!r}]", observations[k], s.np_dtype, lead + s.shape)
        for k, s in specs.items()
    }


def check_transitions(
    schema: Schema,
    obs_horizon: int,
    observations: Any,
    actions: Any,
    rewards: Any,
    terminated: Any,
    truncated: Any,
    next_observations: Any,
    *,
    batched: bool,
) -> dict[str, Any]:
    """Check transitions (one, or a batch when `batched`) and return them with a leading axis.

    Observations carry a time axis [T, ...] when obs_horizon T > 1, as the batch does.
    """
    rew = np.asarray(rewards)
    if batched and rew.ndim != 1:
        raise ValueError(f"rewards: expected shape (n,) for a batch of n, got {rew.shape}")
    lead = (rew.shape[0],) if batched else ()
    time = (obs_horizon,) if obs_horizon > 1 else ()
    out = {
        "rewards": as_field("rewards", rew, np.dtype(np.float32), lead),
        "actions": as_field("actions", actions, np.dtype(np.float32), lead + schema.action_shape),
        "terminated": as_field("terminated", terminated, np.dtype(bool), lead),
        "truncated": as_field("truncated", truncated, np.dtype(bool), lead),
        "observations": check_obs("observations", observations, schema, lead + time),
        "next_observations": check_obs("next_observations", next_observations, schema, lead + time),
    }
    if not batched:
        out = {
            k: ({kk: vv[None] for kk, vv in v.items()} if isinstance(v, dict) else v[None])
            for k, v in out.items()
        }
    return out


@dataclass(frozen=True, eq=False)
class Episode:
    """One episode, each frame stored once: L+1 observations and L transitions.

    Transition t goes from observations[k][t] to observations[k][t + 1]. Observations are
    single frames (no time axis); stacks are built from them with `stack_frames`.
    """

    observations: Mapping[str, np.ndarray]  # {key: [L+1, ...]}
    actions: np.ndarray  # float32 [L, *action_shape]
    rewards: np.ndarray  # float32 [L]
    terminated: np.ndarray  # bool [L]
    truncated: np.ndarray  # bool [L]

    def __len__(self) -> int:
        return len(self.rewards)

    def transitions(self, obs_horizon: int = 1) -> dict[str, Any]:
        """The episode's transitions in batch layout (stacked when obs_horizon > 1)."""
        stacks = {k: stack_frames(v, obs_horizon) for k, v in self.observations.items()}
        return {
            "observations": {k: v[:-1] for k, v in stacks.items()},
            "actions": self.actions,
            "rewards": self.rewards,
            "terminated": self.terminated,
            "truncated": self.truncated,
            "next_observations": {k: v[1:] for k, v in stacks.items()},
        }


def check_episode(schema: Schema, episode: Episode) -> Episode:
    """Check an episode against the schema; a done flag may only be set on the last step."""
    shape = np.shape(episode.rewards)
    if len(shape) != 1 or shape[0] < 1:
        raise ValueError(f"rewards: an episode needs shape (L,) with L >= 1, got {shape}")
    n = shape[0]
    f32 = np.dtype(np.float32)
    ep = Episode(
        observations=check_obs("observations", episode.observations, schema, (n + 1,)),
        actions=as_field("actions", episode.actions, f32, (n, *schema.action_shape)),
        rewards=as_field("rewards", episode.rewards, f32, (n,)),
        terminated=as_field("terminated", episode.terminated, np.dtype(bool), (n,)),
        truncated=as_field("truncated", episode.truncated, np.dtype(bool), (n,)),
    )
    for name in ("terminated", "truncated"):
        if getattr(ep, name)[:-1].any():
            raise ValueError(f"{name}: set before the last step; split the data into episodes")
    return ep


def stack_frames(frames: np.ndarray, obs_horizon: int, stride: int = 1) -> np.ndarray:
    """Frame stacks [L, T, ...] of an episode's frames [L, ...], padded with the first frame;
    the frames of a stack lie `stride` apart (an agent step of `stride` env steps).

    With T == 1 the frames are returned unchanged (no time axis), matching the batch contract.
    """
    if obs_horizon == 1:
        return frames
    t = np.arange(len(frames))[:, None] + stride * np.arange(1 - obs_horizon, 1)[None, :]
    return frames[np.maximum(t, 0)]


def make_batch(
    observations: Mapping[str, np.ndarray],
    actions: np.ndarray,
    rewards: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    next_observations: Mapping[str, np.ndarray],
) -> Batch:
    """Assemble the batch contract (masks stop bootstrapping only at termination)."""
    return {
        "observations": dict(observations),
        "actions": actions,
        "rewards": rewards,
        "masks": (~terminated).astype(np.float32),
        "dones": (terminated | truncated).astype(np.float32),
        "next_observations": dict(next_observations),
    }


def check_capacity(capacity: int, obs_horizon: int) -> None:
    """Validate buffer sizing arguments."""
    if obs_horizon < 1:
        raise ValueError(f"obs_horizon: must be >= 1, got {obs_horizon}")
    if capacity < obs_horizon + 1:
        raise ValueError(f"capacity: need >= obs_horizon + 1 = {obs_horizon + 1}, got {capacity}")
