"""The learner's durable replay log (RUN_DIR/replay, a crash-safe episode store).

Every batch an actor pushes is split into episode fragments and appended here before it is
acknowledged, so after a crash the buffers are rebuilt from disk with every acknowledged
transition exactly once, and the per-actor watermarks come from the log itself. A batch stored
only in part (the learner died between its pieces) is left out of the rebuild and not
acknowledged: its actor sends it again, and the pieces already stored are not written twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serl.data import Episode, EpisodeBuilder, EpisodeStore, Schema
from serl.errors import ConfigError
from serl.train.run_files import SENT_FEATURES

log = logging.getLogger(__name__)

# marks sent features among a piece's observation keys (no transported key has "/")
_TAG = "features/"


@dataclass(frozen=True)
class Fragment:
    """One episode piece of a pushed batch: its pixels (what the log keeps), the indices of the
    steps a person took over, and, when the actor sent features, the piece as buffers hold it."""

    episode: Episode
    intervened: list[int]
    buffered: Episode | None = None


@dataclass
class Reloaded:
    """What the log held at start: env steps in all and per actor, each actor's last batch."""

    env_steps: int = 0
    actor_steps: dict[str, int] = field(default_factory=dict)
    watermarks: dict[str, int] = field(default_factory=dict)


class ReplayLog:
    """RUN_DIR/replay: append a batch's fragments durably; replay them after a restart."""

    def __init__(self, path: Path, schema: Schema) -> None:
        if path.exists():
            self.store = EpisodeStore.open(path, writable=True)
            if self.store.schema != schema:
                raise ConfigError(f"{path}: replay schema differs from the env's")
        else:
            self.store = EpisodeStore.create(path, schema)
        self.path = path
        # per actor whose newest batch is stored in part: (seq, last piece stored)
        self._stored_parts = _unfinished_batches(self.store.all_attrs())

    def reload(self, insert: Callable[[Episode, Sequence[int]], None]) -> Reloaded:
        """Pass every fully stored fragment to `insert` (in order); what was held."""
        held = Reloaded()
        for fragment, attrs in self.store.items():
            actor = attrs["actor"]
            if self._stored_parts.get(actor, (0,))[0] == attrs["seq"]:
                continue
            insert(fragment, attrs.get("intervened", ()))
            held.env_steps += len(fragment)
            held.actor_steps[actor] = held.actor_steps.get(actor, 0) + len(fragment)
            held.watermarks[actor] = max(held.watermarks.get(actor, 0), attrs["seq"])
        if held.env_steps:
            log.info("replay reloaded: %d transitions from %s", held.env_steps, self.path)
        for actor, (seq, part) in self._stored_parts.items():
            log.warning(
                "replay: actor %s's batch %d has %d pieces stored of more; "
                "waiting for the actor to send it again",
                actor,
                seq,
                part + 1,
            )
        return held

    def append_batch(self, actor_id: str, seq: int, fragments: Sequence[Fragment]) -> None:
        """Store a batch's fragments durably, skipping those an earlier attempt stored (the
        caller serialises calls)."""
        done_seq, done_part = self._stored_parts.get(actor_id, (0, -1))
        for part, fragment in enumerate(fragments):
            if (seq, part) <= (done_seq, done_part):
                continue  # stored by an attempt that failed later: never twice
            attrs: dict[str, Any] = {
                "actor": actor_id,
                "seq": seq,
                "part": part,
                "parts": len(fragments),
            }
            if fragment.intervened:  # step indices: the log alone rebuilds the demo buffer
                attrs["intervened"] = fragment.intervened
            self.store.append(fragment.episode, attrs)
            self._stored_parts[actor_id] = (seq, part)

    def close(self) -> None:
        """Close the store."""
        self.store.close()


def _unfinished_batches(all_attrs: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """Per actor whose newest batch the replay holds only some pieces of: (seq, last piece)."""
    newest: dict[str, tuple[int, int, int]] = {}  # actor -> (seq, pieces stored, pieces)
    for attrs in all_attrs:
        actor, seq = attrs["actor"], attrs["seq"]
        last_seq, stored, _ = newest.get(actor, (0, 0, 0))
        if seq != last_seq:
            stored = 0
        newest[actor] = (seq, stored + 1, attrs["parts"])
    return {
        actor: (seq, stored - 1) for actor, (seq, stored, parts) in newest.items() if stored < parts
    }


def split_batch(data: dict[str, Any]) -> list[Fragment]:
    """Split a pushed batch into episode pieces (frames once), cut at dones and at gaps."""
    builder = EpisodeBuilder()
    pieces = []
    obs, nxt = data["observations"], data["next_observations"]
    sent = data.get(SENT_FEATURES)
    if sent is not None:  # carried as extra keys, so both are cut at the same steps
        obs = {**obs, **{_TAG + k: v for k, v in sent["observations"].items()}}
        nxt = {**nxt, **{_TAG + k: v for k, v in sent["next_observations"].items()}}
    n = len(data["rewards"])
    for t in range(n):
        pieces += builder.add(
            {k: v[t] for k, v in obs.items()},
            data["actions"][t],
            data["rewards"][t],
            data["terminated"][t],
            data["truncated"][t],
            {k: v[t] for k, v in nxt.items()},
        )
    last = builder.flush()
    pieces += [last] if last is not None else []
    flags = np.asarray(data["intervened"], bool).reshape(n)
    starts = np.cumsum([0] + [len(p) for p in pieces])  # pieces cover the rows in order
    out = []
    for piece, a, b in zip(pieces, starts[:-1], starts[1:], strict=True):
        pixels, buffered = _split_features(piece)
        out.append(Fragment(pixels, np.flatnonzero(flags[a:b]).tolist(), buffered))
    return out


def _split_features(piece: Episode) -> tuple[Episode, Episode | None]:
    """A piece with sent features as extra keys -> (its pixels, its buffered form)."""
    pixels = {k: v for k, v in piece.observations.items() if not k.startswith(_TAG)}
    sent = {k[len(_TAG) :]: v for k, v in piece.observations.items() if k.startswith(_TAG)}
    rest = (piece.actions, piece.rewards, piece.terminated, piece.truncated)
    return Episode(pixels, *rest), Episode({**pixels, **sent}, *rest) if sent else None
