"""Grouping transition streams into episodes, and importing the original SERL's demo pickles."""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from serl.data.schema import Episode


class EpisodeBuilder:
    """Groups a stream of transitions (single-frame observations) into episodes.

    An episode ends at terminated or truncated, or when a transition's observations differ
    from the previous next_observations (the stream jumped: the earlier episode ends there
    without a done flag). Feed it what the buffer gets (with stacked observations pass the
    newest frame, `obs[k][-1]`) and append what it returns to an `EpisodeStore`.
    """

    def __init__(self) -> None:
        self._frames: list[dict[str, np.ndarray]] = []
        self._steps: list[tuple[Any, Any, Any, Any]] = []

    def add(
        self,
        observations: Mapping[str, Any],
        actions: Any,
        rewards: Any,
        terminated: Any,
        truncated: Any,
        next_observations: Mapping[str, Any],
    ) -> list[Episode]:
        """Add one transition; return the episodes it completed (zero, one or two)."""
        done: list[Episode] = []
        if self._steps and not _same_obs(observations, self._frames[-1]):
            done.append(self._finish())
        if not self._steps:
            self._frames = [_copy_obs(observations)]
        self._frames.append(_copy_obs(next_observations))
        self._steps.append((actions, rewards, terminated, truncated))
        if bool(terminated) or bool(truncated):
            done.append(self._finish())
        return done

    def flush(self) -> Episode | None:
        """End the episode in progress (without a done flag) and return it, if any."""
        return self._finish() if self._steps else None

    def _finish(self) -> Episode:
        actions, rewards, terminated, truncated = zip(*self._steps, strict=True)
        episode = Episode(
            observations={k: np.stack([f[k] for f in self._frames]) for k in self._frames[0]},
            actions=np.asarray(actions, np.float32),
            rewards=np.asarray(rewards, np.float32),
            terminated=np.asarray(terminated, bool),
            truncated=np.asarray(truncated, bool),
        )
        self._frames, self._steps = [], []
        return episode


def step_runs(episode: Episode, steps: Any) -> list[Episode]:
    """The maximal runs of consecutive `steps` (transition indices) of an episode, as episodes.

    Each run keeps its frames once (observations [start, stop]) and its own done flags, so a
    run that stops before the episode's end has none (e.g. the steps a person intervened on).
    """
    mask = np.zeros(len(episode), bool)
    mask[np.asarray(steps, dtype=np.int64)] = True
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.view(np.int8), [0]])))
    return [
        Episode(
            observations={k: v[start : stop + 1] for k, v in episode.observations.items()},
            actions=episode.actions[start:stop],
            rewards=episode.rewards[start:stop],
            terminated=episode.terminated[start:stop],
            truncated=episode.truncated[start:stop],
        )
        for start, stop in zip(edges[::2], edges[1::2], strict=True)
    ]


def joined_fragments(
    items: Iterable[tuple[Episode, dict[str, Any]]],
) -> Iterator[tuple[Episode, dict[str, Any]]]:
    """A replay log's pieces (each actor's, in order; attrs["actor"]) joined back into episodes:
    a piece continues its actor's previous one when that has no done flag and ends on the
    frame it starts from. Intervened step indices are renumbered; the first piece's other
    attrs are kept. Items without an actor pass through."""
    open_: dict[str, tuple[Episode, dict[str, Any]]] = {}
    for episode, attrs in items:
        actor = attrs.get("actor")
        if actor is None:
            yield episode, attrs
            continue
        previous = open_.pop(actor, None)
        if previous is not None:
            if _continues(previous[0], episode):
                episode, attrs = _join(previous, (episode, attrs))
            else:
                yield previous
        if episode.terminated[-1] or episode.truncated[-1]:
            yield episode, attrs
        else:
            open_[actor] = (episode, attrs)
    yield from open_.values()


def _continues(a: Episode, b: Episode) -> bool:
    return not (a.terminated[-1] or a.truncated[-1]) and _same_obs(
        {k: v[0] for k, v in b.observations.items()}, {k: v[-1] for k, v in a.observations.items()}
    )


def _join(
    a: tuple[Episode, dict[str, Any]], b: tuple[Episode, dict[str, Any]]
) -> tuple[Episode, dict[str, Any]]:
    (ea, attrs), (eb, more) = a, b
    episode = Episode(
        observations={
            k: np.concatenate([v, eb.observations[k][1:]]) for k, v in ea.observations.items()
        },
        actions=np.concatenate([ea.actions, eb.actions]),
        rewards=np.concatenate([ea.rewards, eb.rewards]),
        terminated=np.concatenate([ea.terminated, eb.terminated]),
        truncated=np.concatenate([ea.truncated, eb.truncated]),
    )
    intervened = [*attrs.get("intervened", []), *(len(ea) + i for i in more.get("intervened", []))]
    return episode, {**attrs, **({"intervened": intervened} if intervened else {})}


def _copy_obs(obs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in obs.items()}


def _same_obs(a: Mapping[str, Any], b: Mapping[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in b)


def load_pickle_demos(
    path: str | os.PathLike[str], *, trust_pickle: bool = False, horizon_axis: bool = False
) -> list[Episode]:
    """Read the original SERL's demo file (a pickled list of transition dicts) as episodes.

    Unpickling runs code chosen by whoever wrote the file, so this refuses unless
    `trust_pickle=True`. Each transition needs observations, actions, next_observations,
    rewards and masks or dones; a non-dict observation becomes {"state": obs}. The original
    wrapped observations in a ChunkingWrapper that adds a leading time axis even for a
    horizon of 1: pass `horizon_axis=True` to keep only its newest frame. The original marked
    time-limit ends as terminal (masks 0); that cannot be undone here: masks == 0 reads as
    terminated, dones without it as truncated.
    """
    if not trust_pickle:
        raise ValueError(
            f"refusing to unpickle {os.fspath(path)!r}: loading a pickle can run arbitrary code. "
            "Pass trust_pickle=True only for a file you made or fully trust, then convert it "
            "once to an EpisodeStore."
        )
    with open(path, "rb") as f:
        data = pickle.load(f)  # the caller vouched for this file
    if not isinstance(data, list) or not all(isinstance(t, Mapping) for t in data):
        raise ValueError(f"{os.fspath(path)!r}: expected a list of transition dicts")
    builder, episodes = EpisodeBuilder(), []
    for i, t in enumerate(data):
        missing = {"observations", "actions", "next_observations", "rewards"} - t.keys()
        if missing or not {"masks", "dones"} & t.keys():
            raise ValueError(f"transition {i}: missing {sorted(missing) or ['masks or dones']}")
        terminated = float(t["masks"]) == 0.0 if "masks" in t else bool(t["dones"])
        truncated = bool(t.get("dones", terminated)) and not terminated
        episodes += builder.add(
            _demo_obs(t["observations"], horizon_axis),
            t["actions"],
            t["rewards"],
            terminated,
            truncated,
            _demo_obs(t["next_observations"], horizon_axis),
        )
    last = builder.flush()
    return episodes + ([last] if last is not None else [])


def _demo_obs(obs: Any, horizon_axis: bool) -> dict[str, np.ndarray]:
    obs = obs if isinstance(obs, Mapping) else {"state": obs}
    return {k: np.asarray(v)[-1] if horizon_axis else np.asarray(v) for k, v in obs.items()}
