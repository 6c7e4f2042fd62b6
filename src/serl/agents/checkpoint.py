"""Save and restore a whole agent: Orbax for every array of the state (params, targets,
optimizer states, temperature, frozen parameters, RNG, counters), JSON for config and spec.

Layout of a checkpoint directory:
    agent.json   {"format": 1, "agent": ..., "config": {...}, "spec": {...}}
    state/       Orbax checkpoint of the state's arrays
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import jax

from serl.agents.common import AgentSpec
from serl.agents.persist import restore_into, save_tree, spec_from_dict, spec_to_dict
from serl.agents.registry import kind, kind_of
from serl.dataclass_json import decode

FORMAT = 1


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-able dict of a config, with its agent name: {"agent": ..., "config": {...}}."""
    return {"agent": config.agent, "config": dataclasses.asdict(config)}


def config_from_dict(d: dict[str, Any]) -> Any:
    """Inverse of `config_to_dict` (unknown fields are an error)."""
    return decode(kind(d["agent"]).config, d["config"], f"{d['agent']} config")


def save(state: Any, directory: str | os.PathLike) -> Path:
    """Write the agent to `directory` (created; an existing checkpoint there is replaced)."""
    kind_of(state.config)  # only a registered agent can be restored
    meta = {"format": FORMAT, **config_to_dict(state.config), "spec": spec_to_dict(state.spec)}
    return save_tree(state, Path(directory), "agent.json", meta)


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
    init = kind_of(config).init
    template = jax.eval_shape(lambda: init(config, spec, 0, load_pretrained=False))
    return restore_into(template, directory)
