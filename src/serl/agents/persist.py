"""Saving pytrees of arrays: Orbax for the arrays and a JSON file beside them, written last, so a
directory holding that JSON is complete. Shared by agent checkpoints and saved classifiers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization

from serl.agents.common import AgentSpec


def save_tree(state: Any, directory: Path, meta_file: str, meta: dict[str, Any]) -> Path:
    """Write `state`'s arrays to DIRECTORY/state (an existing save there is replaced), then
    DIRECTORY/`meta_file` (JSON)."""
    directory = directory.absolute()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / meta_file).unlink(missing_ok=True)  # incomplete until the arrays are written
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(directory / "state", serialization.to_state_dict(state), force=True)
        ckptr.wait_until_finished()
    tmp = directory / f"{meta_file}.tmp"
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
    tmp.replace(directory / meta_file)
    return directory


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


def spec_to_dict(spec: AgentSpec) -> dict[str, Any]:
    """A JSON-able dict of an agent spec."""
    return {"observation": [list(o) for o in spec.observation], "action_dim": spec.action_dim}


def spec_from_dict(d: dict[str, Any]) -> AgentSpec:
    """Inverse of `spec_to_dict`."""
    obs = tuple(
        (str(k), tuple(int(s) for s in shape), str(dt)) for k, shape, dt in d["observation"]
    )
    return AgentSpec(obs, int(d["action_dim"]))


def leaf_hashes(tree: Any) -> dict[str, str]:
    """sha256 of every leaf (dtype, shape, bytes) by path: proof a restore brought all back."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        x = np.asarray(jax.device_get(leaf))
        digest = hashlib.sha256(f"{x.dtype}{x.shape}".encode() + x.tobytes()).hexdigest()
        out[jax.tree_util.keystr(path)] = digest
    return out


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
