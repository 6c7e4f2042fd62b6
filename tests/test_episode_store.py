"""Episode store: exact round trips, a layout plain Zarr reads, single writer, demo import."""

from __future__ import annotations

import pathlib
import pickle

import numpy as np
import pytest
import zarr

import serl.data.episode_store as episode_store
from serl.data import (
    Episode,
    EpisodeBuilder,
    EpisodeStore,
    FrameReplayBuffer,
    ReplayBuffer,
    Schema,
    load_episodes,
    load_pickle_demos,
)

SCHEMA = Schema.create(
    {"front": ((6, 6, 3), "uint8"), "wrist": ((6, 6, 3), "uint8"), "state": ((3,), "float32")},
    action_shape=(2,),
)


def episode(index: int, length: int | None = None) -> Episode:
    rng = np.random.default_rng(index)
    n = length or 3 + index % 5
    last = np.arange(n) == n - 1
    ids = 100 * index + np.arange(n + 1)
    state = np.concatenate([ids[:, None], rng.normal(size=(n + 1, 2))], 1)
    return Episode(
        observations={
            "front": rng.integers(0, 256, (n + 1, 6, 6, 3), dtype=np.uint8),
            "wrist": rng.integers(0, 256, (n + 1, 6, 6, 3), dtype=np.uint8),
            "state": state.astype(np.float32),
        },
        actions=np.stack([ids[:-1], rng.normal(size=n)], 1).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32),
        terminated=last & (index % 3 == 0),
        truncated=last & (index % 3 == 1),
    )


def assert_identical(a: Episode, b: Episode) -> None:
    for field in ("actions", "rewards", "terminated", "truncated"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), field
    assert a.observations.keys() == b.observations.keys()
    for k in a.observations:
        x, y = a.observations[k], b.observations[k]
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), k


def test_round_trip_is_exact(tmp_path):
    path = tmp_path / "demos.zarr"
    episodes = [episode(i) for i in range(6)]
    with EpisodeStore.create(path, SCHEMA) as store:
        assert [store.append(ep) for ep in episodes] == list(range(6))
    store = EpisodeStore.open(path)
    assert store.schema == SCHEMA and len(store) == 6 and not store.writable
    for got, want in zip(store, episodes, strict=True):
        assert_identical(got, want)
    assert_identical(store[-1], episodes[-1])
    with pytest.raises(IndexError):
        store[6]


def test_plain_zarr_reads_the_layout(tmp_path):
    path = tmp_path / "demos.zarr"
    with EpisodeStore.create(path, SCHEMA) as store:
        for i in range(3):
            store.append(episode(i))
    root = zarr.open_group(path, mode="r")
    meta = root.attrs["serl"]
    assert meta["format"] == "serl.episode_store" and meta["version"] == 1
    assert meta["schema"] == SCHEMA.to_json() and "episodes/<index:06d>" in meta["layout"]
    assert sorted(root["episodes"].group_keys()) == ["000000", "000001", "000002"]
    group = root["episodes/000002"]
    want = episode(2)
    assert group.attrs["length"] == len(want)
    front = group["observations/front"]
    assert front.shape == (len(want) + 1, 6, 6, 3) and front.chunks == front.shape
    assert any("Zstd" in type(c).__name__ for c in front.compressors)
    np.testing.assert_array_equal(front[...], want.observations["front"])
    np.testing.assert_array_equal(group["truncated"][...], want.truncated)
    assert group["terminated"].dtype == np.bool_


def test_one_writer_at_a_time_and_readers_see_new_episodes(tmp_path):
    path = tmp_path / "replay.zarr"
    writer = EpisodeStore.create(path, SCHEMA)
    reader = EpisodeStore.open(path)
    with pytest.raises(RuntimeError, match="another process is appending"):
        EpisodeStore.open(path, writable=True)
    with pytest.raises(PermissionError, match="read-only"):
        reader.append(episode(0))
    writer.append(episode(0))
    assert len(reader) == 1
    writer.append(episode(1))
    assert_identical(reader[1], episode(1))  # past the end the reader had counted
    assert reader.attrs(-1)["length"] == len(episode(1).actions)
    with pytest.raises(IndexError):
        reader[2]
    assert len(writer) == 2
    writer.close()
    with EpisodeStore.open(path, writable=True) as again:
        assert again.append(episode(2)) == 2
    with pytest.raises(FileExistsError):
        EpisodeStore.create(path, SCHEMA)
    with pytest.raises(FileNotFoundError):
        EpisodeStore.open(tmp_path / "nothing")
    zarr.open_group(tmp_path / "other", mode="w")
    with pytest.raises(ValueError, match=r"not a serl\.episode_store"):
        EpisodeStore.open(tmp_path / "other")


def test_invalid_episode_is_rejected_before_anything_is_written(tmp_path):
    path = tmp_path / "s.zarr"
    with EpisodeStore.create(path, SCHEMA) as store:
        store.append(episode(0))
        bad = episode(1)
        bad.observations["state"][2, 1] = np.nan
        with pytest.raises(ValueError, match="observations\\['state'\\]: contains non-finite"):
            store.append(bad)
        assert len(store) == 1 and not (path / "_incomplete").exists()


def test_crash_before_the_commit_leaves_earlier_episodes_and_no_trace(tmp_path, monkeypatch):
    path = tmp_path / "s.zarr"
    store = EpisodeStore.create(path, SCHEMA)
    store.append(episode(0))

    def crash(*args):
        raise KeyboardInterrupt("killed between writing and publishing")

    monkeypatch.setattr(episode_store.os, "rename", crash)
    with pytest.raises(KeyboardInterrupt):
        store.append(episode(1))
    monkeypatch.undo()
    store.close()
    assert (path / "_incomplete").exists()  # the half-finished episode is hidden there
    reader = EpisodeStore.open(path)
    assert len(reader) == 1
    assert_identical(reader[0], episode(0))
    with EpisodeStore.open(path, writable=True) as store:
        assert not (path / "_incomplete").exists()
        assert store.append(episode(1)) == 1
    assert_identical(EpisodeStore.open(path)[1], episode(1))


@pytest.mark.parametrize("T", [1, 2])
def test_store_loads_exactly_into_any_buffer(tmp_path, T):
    path = tmp_path / "s.zarr"
    episodes = [episode(i) for i in range(5)]
    with EpisodeStore.create(path, SCHEMA) as store:
        for ep in episodes:
            store.append(ep)
    expected = {}
    for ep in episodes:
        tr = ep.transitions(T)
        for t in range(len(ep)):
            expected[float(ep.actions[t, 0])] = (
                {k: v[t] for k, v in tr["observations"].items()},
                {k: v[t] for k, v in tr["next_observations"].items()},
                float(1 - ep.terminated[t]),
            )
    for buf in (
        ReplayBuffer(SCHEMA, 100, T),
        FrameReplayBuffer(SCHEMA, 100, T),
        FrameReplayBuffer(SCHEMA, 100, T, jpeg_keys=("front",)),
    ):
        steps = load_episodes(buf, EpisodeStore.open(path))
        assert steps == len(buf) == sum(len(ep) for ep in episodes)
        batch = buf.sample(200, np.random.default_rng(0))
        for i, a in enumerate(batch["actions"][:, 0]):
            obs, nxt, mask = expected[float(a)]
            assert batch["masks"][i] == mask
            for k in set(SCHEMA.obs_specs) - set(getattr(buf, "jpeg_keys", ())):
                np.testing.assert_array_equal(batch["observations"][k][i], obs[k])
                np.testing.assert_array_equal(batch["next_observations"][k][i], nxt[k])


def test_episode_builder_splits_on_done_and_on_jumps():
    builder = EpisodeBuilder()
    a, b = episode(0, length=3), episode(1, length=2)
    out = []
    for ep, stop in ((a, 2), (b, 2)):  # a is cut after 2 steps: b's first obs does not continue it
        tr = ep.transitions(1)
        for t in range(stop):
            out += builder.add(
                *(
                    {k: v[t] for k, v in tr[f].items()} if isinstance(tr[f], dict) else tr[f][t]
                    for f in (
                        "observations",
                        "actions",
                        "rewards",
                        "terminated",
                        "truncated",
                        "next_observations",
                    )
                )
            )
    assert builder.flush() is None
    assert [len(e) for e in out] == [2, 2]
    assert not out[0].terminated.any() and not out[0].truncated.any()
    assert_identical(out[1], b)
    np.testing.assert_array_equal(out[0].observations["front"], a.observations["front"][:3])


class _Tripwire:
    """Unpickling this touches a file: proof that a pickle was (or was not) loaded."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (self.path,))


def original_demo_transitions(horizon_axis: bool) -> list[dict]:
    """Transitions shaped like the original SERL's record_demos pickles."""
    out = []
    for e in (0, 1):
        ep = episode(e)
        for t in range(len(ep)):

            def obs(i, ep=ep):
                o = {k: v[i] for k, v in ep.observations.items()}
                o["state"] = o["state"].astype(np.float64)  # the original kept float64
                return {k: v[None] for k, v in o.items()} if horizon_axis else o

            done = float(t == len(ep) - 1)
            out.append(
                {
                    "observations": obs(t),
                    "actions": ep.actions[t].astype(np.float64),
                    "next_observations": obs(t + 1),
                    "rewards": float(ep.rewards[t]),
                    "masks": 1.0 - done if e == 0 else 1.0,  # episode 1 ended by a time limit
                    "dones": done,
                    "infos": {},
                }
            )
    return out


@pytest.mark.parametrize("horizon_axis", [False, True])
def test_importing_original_demo_pickles_requires_trust(tmp_path, horizon_axis):
    path = tmp_path / "demos.pkl"
    with open(path, "wb") as f:
        pickle.dump(original_demo_transitions(horizon_axis), f)
    with pytest.raises(ValueError, match="trust_pickle=True"):
        load_pickle_demos(path)
    episodes = load_pickle_demos(path, trust_pickle=True, horizon_axis=horizon_axis)
    assert len(episodes) == 2
    assert episodes[0].terminated[-1] and not episodes[0].truncated[-1]
    assert episodes[1].truncated[-1] and not episodes[1].terminated[-1]
    with EpisodeStore.create(tmp_path / "demos.zarr", SCHEMA) as store:
        for ep in episodes:
            store.append(ep)
    for i, got in enumerate(EpisodeStore.open(tmp_path / "demos.zarr")):
        assert_identical(got, episode(i))  # episode 0 terminated, episode 1 truncated


def test_untrusted_pickle_is_never_loaded(tmp_path):
    marker, path = tmp_path / "code-ran", tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps([_Tripwire(marker)]))
    with pytest.raises(ValueError, match="loading a pickle can run arbitrary code"):
        load_pickle_demos(path)
    assert not marker.exists()
    with pytest.raises(ValueError, match="expected a list of transition dicts"):
        load_pickle_demos(path, trust_pickle=True)  # trusted: it runs, then fails the check
    assert marker.exists()


def test_append_keeps_json_attributes(tmp_path) -> None:
    from serl.data import Episode, EpisodeStore, Schema

    schema = Schema.create({"state": ((2,), np.float32)}, (1,))
    episode = Episode(
        observations={"state": np.zeros((3, 2), np.float32)},
        actions=np.zeros((2, 1), np.float32),
        rewards=np.zeros(2, np.float32),
        terminated=np.zeros(2, bool),
        truncated=np.zeros(2, bool),
    )
    with EpisodeStore.create(tmp_path / "s", schema) as store:
        store.append(episode, attrs={"actor": "a0", "seq": 7})
        store.append(episode)
        with pytest.raises(ValueError, match="reserved"):
            store.append(episode, attrs={"length": 1})
    store = EpisodeStore.open(tmp_path / "s")
    assert store.attrs(0) == {"actor": "a0", "seq": 7, "length": 2}
    assert store.attrs(-1) == {"length": 2}
    assert len(store) == 2
