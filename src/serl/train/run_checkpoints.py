"""Atomic learner checkpoints: agent, counters, RNG and config, committed by one rename.

RUN_DIR/checkpoints/<updates:09d>/ holds `agent/` (serl.agents.checkpoint), `meta.json`
(counters, sampler RNG state, wall time) and `COMPLETE`. A checkpoint is written under a
temporary name, fsynced and renamed into place; only then are older ones pruned (the newest
`keep` stay), so a crash at any moment leaves the previous complete checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from serl.agents import checkpoint as agent_checkpoint
from serl.data.episode_store import fsync_dir, fsync_tree

_NAME = re.compile(r"^\d{9}$")
MARKER = "COMPLETE"


def save_checkpoint(
    run_dir: Path, agent_state: Any, updates: int, meta: dict[str, Any], keep: int = 2
) -> Path:
    """Write checkpoint `updates` atomically and prune all but the newest `keep`."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{updates:09d}"
    if final.exists():
        return final  # already saved at this update count
    tmp = root / f".tmp-{uuid.uuid4().hex}"
    agent_checkpoint.save(agent_state, tmp / "agent")
    (tmp / "meta.json").write_text(json.dumps({**meta, "updates": updates}, indent=2))
    (tmp / MARKER).write_text("")
    fsync_tree(tmp)
    os.rename(tmp, final)  # the commit point
    fsync_dir(root)
    for old in complete_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-*"):  # a crashed writer's leftovers
        shutil.rmtree(stale, ignore_errors=True)
    return final


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if _NAME.match(p.name) and (p / MARKER).exists())


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint, if any."""
    found = complete_checkpoints(run_dir)
    return found[-1] if found else None


def load_checkpoint(path: Path) -> tuple[Any, dict[str, Any]]:
    """The agent state (bit-identical to what was saved) and the meta dict."""
    meta = json.loads((path / "meta.json").read_text())
    return agent_checkpoint.restore(path / "agent"), meta
