"""Append-only, crash-safe episode store on disk (a plain Zarr v3 hierarchy).

Layout (any Zarr v3 reader can open it; arrays use Zarr's default zstd codec, one chunk per
array, so an episode's frames form a single compressed chunk):

    STORE/                          group; attributes["serl"] = {"format": "serl.episode_store",
                                    "version": 1, "schema": {...}, "layout": "..."}
      episodes/                     group
        000000/                     group per completed episode; attributes {"length": L, ...}
          observations/<key>        [L+1, *shape] each frame once (obs t -> t+1 is step t)
          actions                   float32 [L, *action_shape]
          rewards                   float32 [L]
          terminated                bool [L]  (the episode ended in a terminal state)
          truncated                 bool [L]  (cut by a time limit: bootstrap through it)
        000001/ ...

Crash safety: an episode is written completely under STORE/_incomplete/<random>/, fsynced,
then renamed to episodes/<index> in one atomic rename (and the directory fsynced). A process
killed at any point loses at most the episode it was writing; readers never see part of
one. One writer at a time holds an exclusive flock on STORE/zarr.json; opening a writer
removes leftovers of a killed one.

Replay snapshots are this same log: append each episode when it completes (an
`EpisodeBuilder` fed the buffer's transitions groups them), instead of dumping the buffer
periodically, and `load_episodes` refills any buffer from it after a restart.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import zarr
from zarr.api.asynchronous import open_group as open_group_async
from zarr.core.sync import sync  # runs on zarr's own loop: also inside Jupyter's

from serl.data.replay import Buffer
from serl.data.schema import Episode, Schema, check_episode
from serl.errors import ConfigError, PathExists, PathNotFound, ProcessFailed

FORMAT = "serl.episode_store"
VERSION = 1
LAYOUT = (
    "episodes/<index:06d>/{observations/<key>[L+1,...], actions[L,...], rewards[L], "
    "terminated[L], truncated[L]}; transition t goes from observation t to t+1"
)
_EPISODE_NAME = re.compile(r"^\d{6,}$")
_INCOMPLETE = "_incomplete"
_STEP_ARRAYS = ("actions", "rewards", "terminated", "truncated")
T = TypeVar("T")


class EpisodeStore:
    """Read episodes from a store and, when opened writable, append new ones."""

    def __init__(self, path: Path, schema: Schema, lock_fd: int | None) -> None:
        """Use `EpisodeStore.create` or `EpisodeStore.open`."""
        self.path = path
        self.schema = schema
        self._lock_fd = lock_fd
        self._count = self._count_episodes()  # a writer's is exact: no one else appends

    @classmethod
    def create(cls, path: str | os.PathLike[str], schema: Schema) -> EpisodeStore:
        """Create an empty store at `path` (which must not exist) and open it for appending."""
        path = Path(path)
        if path.exists():
            raise PathExists(f"{path}: already exists; use EpisodeStore.open to append")
        attrs = {"format": FORMAT, "version": VERSION, "schema": schema.to_json(), "layout": LAYOUT}
        root = zarr.open_group(path, mode="w-", attributes={"serl": attrs})
        root.create_group("episodes")
        fsync_tree(path)
        return cls.open(path, writable=True)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, writable: bool = False) -> EpisodeStore:
        """Open an existing store; `writable` takes the single-writer lock."""
        path = Path(path)
        try:
            attrs = zarr.open_group(path, mode="r").attrs.asdict().get("serl", {})
        except FileNotFoundError as e:
            raise PathNotFound(f"{path}: no episode store here") from e
        if attrs.get("format") != FORMAT or attrs.get("version") != VERSION:
            raise ConfigError(f"{path}: not a {FORMAT} version {VERSION} store")
        lock_fd = None
        if writable:
            lock_fd = os.open(path / "zarr.json", os.O_RDONLY)
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(lock_fd)
                raise ProcessFailed(f"{path}: another process is appending to this store") from None
            shutil.rmtree(path / _INCOMPLETE, ignore_errors=True)  # a killed writer's leftovers
        return cls(path, Schema.from_json(attrs["schema"]), lock_fd)

    @property
    def writable(self) -> bool:
        """Whether this handle may append."""
        return self._lock_fd is not None

    def __len__(self) -> int:
        if not self.writable:  # a reader sees what a writer has appended since
            self._count = self._count_episodes()
        return self._count

    def _count_episodes(self) -> int:
        names = [n for n in os.listdir(self.path / "episodes") if _EPISODE_NAME.match(n)]
        if sorted(int(n) for n in names) != list(range(len(names))):
            raise ValueError(f"{self.path}: episode numbers are not contiguous: {sorted(names)}")
        return len(names)

    def _index(self, index: int) -> int:
        """`index` as a position in the store; lists the directory only past the known end."""
        if 0 <= index < self._count:  # episodes are never removed
            return index
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"episode {index} out of range for a store of {n}")
        return index % n

    def __getitem__(self, index: int) -> Episode:
        return self._read(self._index(index))

    def __iter__(self) -> Iterator[Episode]:
        for episode, _ in self.items():
            yield episode

    def items(self, window: int | None = None) -> Iterator[tuple[Episode, dict[str, Any]]]:
        """Every episode with its attrs, in order, reading `window` of them concurrently (a
        resumed learner rereads its whole replay this way); default 64, 8 with cameras."""
        window = window or (8 if self.schema.image_keys else 64)  # camera episodes are large
        yield from self._concurrently(self._read_async, window)

    def all_attrs(self, window: int = 256) -> list[dict[str, Any]]:
        """Every episode's attrs, in order (read concurrently)."""
        return list(self._concurrently(self._attrs_async, window))

    def _concurrently(self, read: Callable[[int], Awaitable[T]], window: int) -> Iterator[T]:
        n = len(self)
        for first in range(0, n, window):
            yield from sync(_gather(read(i) for i in range(first, min(n, first + window))))

    def _read(self, index: int) -> Episode:
        return sync(self._read_async(index))[0]

    async def _group(self, index: int) -> Any:
        return await open_group_async(self.path / "episodes" / f"{index:06d}", mode="r")

    async def _attrs_async(self, index: int) -> dict[str, Any]:
        return dict((await self._group(index)).attrs)

    async def _read_async(self, index: int) -> tuple[Episode, dict[str, Any]]:
        group = await self._group(index)
        obs = await group.getitem("observations")
        keys = list(self.schema.obs_specs)
        arrays = [await obs.getitem(k) for k in keys]
        arrays += [await group.getitem(name) for name in _STEP_ARRAYS]
        values = await asyncio.gather(*(a.getitem(...) for a in arrays))
        observations = dict(zip(keys, values[: len(keys)], strict=True))
        steps = dict(zip(_STEP_ARRAYS, values[len(keys) :], strict=True))
        return Episode(observations=observations, **steps), dict(group.attrs)

    def attrs(self, index: int) -> dict[str, Any]:
        """The attributes stored with an episode: its length and what `append` was given."""
        return sync(self._attrs_async(self._index(index)))

    def append(self, episode: Episode, attrs: Mapping[str, Any] | None = None) -> int:
        """Write one complete episode durably, with optional JSON `attrs`; return its index."""
        if not self.writable:
            raise PermissionError(f"{self.path}: opened read-only; use open(..., writable=True)")
        ep = check_episode(self.schema, episode)
        if attrs and "length" in attrs:
            raise ValueError("attrs: 'length' is reserved for the episode's length")
        index = self._count
        tmp = self.path / _INCOMPLETE / uuid.uuid4().hex
        sync(_write_episode(tmp, ep, {**(attrs or {}), "length": len(ep)}))
        fsync_tree(tmp)
        episodes = self.path / "episodes"
        os.rename(tmp, episodes / f"{index:06d}")  # the commit point
        self._count = index + 1
        fsync_dir(episodes)
        os.rmdir(self.path / _INCOMPLETE)
        return index

    def close(self) -> None:
        """Release the writer lock (a no-op for readers)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> EpisodeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _gather(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    return await asyncio.gather(*awaitables)


def load_episodes(buffer: Buffer, episodes: Iterable[Episode]) -> int:
    """Insert episodes (a store, imported demos, ...) into a buffer; return the step count."""
    steps = 0
    for episode in episodes:
        buffer.insert_episode(episode)
        steps += len(episode)
    return steps


async def _write_episode(path: Path, ep: Episode, attrs: dict[str, Any]) -> None:
    """An episode's group at `path` (which must not exist), its arrays written concurrently
    (one at a time, each array's round trip to zarr's loop dominated a small episode's append)."""
    group = await open_group_async(path, mode="w-", attributes=attrs)
    obs = await group.create_group("observations")
    arrays = [(obs, key, frames) for key, frames in ep.observations.items()]
    arrays += [(group, name, getattr(ep, name)) for name in _STEP_ARRAYS]
    await asyncio.gather(
        *(
            parent.create_array(name, data=np.ascontiguousarray(data), chunks=data.shape)
            for parent, name, data in arrays
        )
    )


@contextmanager
def built_beside(out: Path) -> Iterator[Path]:
    """A path beside `out` (which must not exist) to build a new file or directory at: renamed
    to `out` when the block completes, removed when it fails, so `out` is whole or absent."""
    if out.exists():
        raise PathExists(f"{out} exists; choose a new --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield scratch / out.name
        os.replace(scratch / out.name, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def fsync_tree(root: Path) -> None:
    """fsync every file and directory below `root`, deepest first."""
    for dirpath, _, files in os.walk(root, topdown=False):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def fsync_dir(path: Path) -> None:
    """fsync a directory, so the entries created or renamed in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
