"""Save and restore a whole agent: Orbax for every array of the state (params, targets,
optimizer states, temperature, frozen parameters, RNG, counters), JSON for config and spec.

Layout of a checkpoint directory:
    agent.json   {"format": 1, "agent": ..., "config": {...}, "spec": {...}}
    state/       Orbax checkpoint of the state's arrays
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization

from serl.agents import bc, sac, vice
from serl.agents.bc import BCConfig
from serl.agents.classifier import ClassifierConfig
from serl.agents.common import AgentSpec, EncoderConfig
from serl.agents.drq import DrQConfig
from serl.agents.sac import SACConfig
from serl.agents.vice import VICEConfig

FORMAT = 1
CONFIGS: dict[str, type] = {"sac": SACConfig, "drq": DrQConfig, "bc": BCConfig, "vice": VICEConfig}
_INIT = {"sac": sac.init_state, "drq": sac.init_state, "bc": bc.init_state, "vice": vice.init_state}


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-able dict of a config, with its agent name: {"agent": ..., "config": {...}}."""
    return {"agent": config.agent, "config": dataclasses.asdict(config)}


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def config_from_dict(d: dict[str, Any]) -> Any:
    """Inverse of `config_to_dict` (unknown fields are an error)."""
    cls = CONFIGS[d["agent"]]
    fields = {k: _tuples(v) for k, v in d["config"].items()}
    if isinstance(fields.get("encoder"), dict):
        fields["encoder"] = EncoderConfig(**{k: _tuples(v) for k, v in fields["encoder"].items()})
    if isinstance(fields.get("classifier"), dict):  # VICE's
        c = {k: _tuples(v) for k, v in fields["classifier"].items()}
        c["encoder"] = EncoderConfig(**{k: _tuples(v) for k, v in c["encoder"].items()})
        fields["classifier"] = ClassifierConfig(**c)
    return cls(**fields)


def spec_to_dict(spec: AgentSpec) -> dict[str, Any]:
    """A JSON-able dict of an agent spec."""
    return {"observation": [list(o) for o in spec.observation], "action_dim": spec.action_dim}


def spec_from_dict(d: dict[str, Any]) -> AgentSpec:
    """Inverse of `spec_to_dict`."""
    obs = tuple(
        (str(k), tuple(int(s) for s in shape), str(dt)) for k, shape, dt in d["observation"]
    )
    return AgentSpec(obs, int(d["action_dim"]))


def save(state: Any, directory: str | os.PathLike) -> Path:
    """Write the agent to `directory` (created; an existing checkpoint there is replaced)."""
    directory = Path(directory).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, **config_to_dict(state.config), "spec": spec_to_dict(state.spec)}
    (directory / "agent.json").unlink(missing_ok=True)  # incomplete until the state is written
    tmp = directory / "agent.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(directory / "state", serialization.to_state_dict(state), force=True)
        ckptr.wait_until_finished()
    tmp.replace(directory / "agent.json")  # last: a directory with agent.json is complete
    return directory


def load_meta(directory: str | os.PathLike) -> tuple[Any, AgentSpec]:
    """The config and spec of a saved agent (e.g. to rebuild an actor)."""
    meta = json.loads((Path(directory) / "agent.json").read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{directory}: unsupported checkpoint format {meta.get('format')}")
    return config_from_dict(meta), spec_from_dict(meta["spec"])


def restore(directory: str | os.PathLike) -> Any:
    """Rebuild a saved agent exactly (every leaf bit-identical to the saved one)."""
    directory = Path(directory).absolute()
    config, spec = load_meta(directory)
    template = jax.eval_shape(lambda: _INIT[config.agent](config, spec, 0, load_pretrained=False))
    return restore_into(template, directory)


def restore_into(template: Any, directory: Path) -> Any:
    """DIRECTORY/state restored into the structure of `template` (abstract leaves suffice),
    refusing a checkpoint whose leaves differ in path, shape or dtype."""
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
        serialization.to_state_dict(template),
    )
    with ocp.StandardCheckpointer() as ckptr:
        _check_matches(ckptr.metadata(directory / "state").item_metadata.tree, abstract, directory)
        arrays = ckptr.restore(directory / "state", abstract)
    return serialization.from_state_dict(template, arrays)


def _leaf_specs(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    return {
        jax.tree_util.keystr(path): (tuple(x.shape), str(np.dtype(x.dtype)))
        for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def _check_matches(saved: Any, expected: Any, directory: Path) -> None:
    """Refuse (clearly) a checkpoint whose arrays do not fit the agent its config describes."""
    got, want = _leaf_specs(saved), _leaf_specs(expected)
    bad = sorted(set(got) ^ set(want)) + sorted(
        k for k in got.keys() & want.keys() if got[k] != want[k]
    )
    if bad:
        raise ValueError(f"{directory}: checkpoint arrays do not match its config at {bad[:5]}")


def leaf_hashes(tree: Any) -> dict[str, str]:
    """sha256 of every leaf (dtype, shape, bytes) by path: proof a restore brought all back."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        x = np.asarray(jax.device_get(leaf))
        digest = hashlib.sha256(f"{x.dtype}{x.shape}".encode() + x.tobytes()).hexdigest()
        out[jax.tree_util.keystr(path)] = digest
    return out
