"""A run directory's small files, shared by every process of a run (learner, actors, launcher,
`serl eval`): RUN_DIR/intervention.json, reward.json, token and learner.json, the transport
schema hash actor and learner must agree on, atomic JSON writes. Process modules import this,
never each other."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import time
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from serl.data import Schema
from serl.dataclass_json import JsonFile
from serl.errors import ConfigError, ProcessFailed
from serl.train.envs import LABEL_ENV_KWARGS

if TYPE_CHECKING:
    from serl.train.feature_cache import FeatureCache

LEARNER_FILE = "learner.json"  # {"address": HOST:PORT, "pid"}: written once the learner listens
SENT_FEATURES = "features"  # a pushed batch's {observations, next_observations} camera features


# who may take over a training episode: nobody, the simulated human, or a person at a device
Intervener = Literal["none", "sim", "spacemouse", "gamepad", "keyboard"]
INTERVENERS = typing.get_args(Intervener)


@dataclasses.dataclass(frozen=True)
class InterventionConfig(JsonFile):
    """Who may intervene in a run's training episodes: nobody, the simulated human, a device.

    Kept in RUN_DIR/intervention.json beside config.json (an actor-side setting: the person
    sits at the actor's machine). `sim_rules` overrides `serl.envs.SimHumanRules` fields.
    """

    FILE: ClassVar[str] = "intervention.json"
    kind: Intervener = "none"
    hold_s: float = 0.5  # device interventions last this long after the last input
    action_scale: float = 0.3  # a device's full deflection, as a fraction of the action range
    sim_rules: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in INTERVENERS:
            raise ConfigError(f"intervene: expected one of {INTERVENERS}, got {self.kind!r}")


@dataclasses.dataclass(frozen=True)
class RewardConfig(JsonFile):
    """A run's learned reward, kept in RUN_DIR/reward.json beside config.json (actor-side).

    `classifier` names a saved classifier (None: the env's own reward); `threshold` None uses
    the classifier's. `env_kwargs` make the env the classifier rewards (e.g. the pick-cube's
    dense variant, so that the classifier, not the simulator, ends episodes).
    """

    FILE: ClassVar[str] = "reward.json"
    classifier: str | None = None
    threshold: float | None = None
    gripper_key: str | None = None
    gripper_threshold: float = 0.5
    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def for_env(cls, env_id: str, classifier: str | Path, **kwargs: Any) -> RewardConfig:
        """A learned reward for `env_id`, with the env variant that lets it end episodes."""
        env_kwargs = dict(LABEL_ENV_KWARGS.get(env_id, {}))
        return cls(classifier=str(classifier), env_kwargs=env_kwargs, **kwargs)


def run_token(run_dir: Path) -> str:
    """The run's shared secret (RUN_DIR/token, owner-only), created on first use."""
    path = run_dir / "token"
    if not path.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(16))
    return path.read_text().strip()


def transport_schema_hash(schema: Schema, features: FeatureCache | None = None) -> str:
    """What actor and learner must agree on: observation/action layout and protocol payload,
    and the layout of the camera features the actor sends (`FeatureCache.sent_by_actor`)."""
    from serl.distributed import schema_hash  # the transport, only where a process needs it

    payload: dict[str, Any] = {"schema": schema.to_json(), "payload": "transition/v1"}
    if features is not None and features.sent_by_actor:
        payload["features"] = features.schema(schema).to_json()
    return schema_hash(payload)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Replace a small JSON file so readers never see half of it."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def written_address(path: Path) -> str | None:
    """The address a learner wrote to its learner.json; None while there is none (yet)."""
    try:
        return json.loads(path.read_text())["address"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None


def learner_address(learner: str, timeout: float = 600.0) -> str:
    """`learner` when it is HOST:PORT; when it is a learner.json, the address in it, waiting
    for the learner to write it (a local run starts its actors beside the learner)."""
    if not learner.endswith(".json"):
        return learner
    deadline = time.monotonic() + timeout
    while (address := written_address(Path(learner))) is None:
        if time.monotonic() > deadline:
            raise ProcessFailed(f"no learner wrote its address to {learner} within {timeout:.0f} s")
        time.sleep(0.05)
    return address
