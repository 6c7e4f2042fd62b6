"""Validation at insert: bad fields raise a ValueError naming the field; the buffer is unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from serl.data import ArraySpec, Episode, FrameReplayBuffer, ReplayBuffer, Schema, stack_frames

SCHEMA = Schema.create({"cam": ((4, 4, 3), "uint8"), "state": ((3,), "float32")}, (2,))
BUFFERS = {
    "plain": lambda T: ReplayBuffer(SCHEMA, 16, T),
    "frames": lambda T: FrameReplayBuffer(SCHEMA, 16, T),
    "jpeg": lambda T: FrameReplayBuffer(SCHEMA, 16, T, jpeg_keys=("cam",)),
}


def episode(length: int, seed: int) -> Episode:
    rng = np.random.default_rng(seed)
    return Episode(
        observations={
            "cam": rng.integers(0, 256, (length + 1, 4, 4, 3), dtype=np.uint8),
            "state": rng.normal(size=(length + 1, 3)).astype(np.float32),
        },
        actions=rng.uniform(-1, 1, (length, 2)).astype(np.float32),
        rewards=rng.normal(size=length).astype(np.float32),
        terminated=np.arange(length) == length - 1,
        truncated=np.zeros(length, bool),
    )


def transition(ep: Episode, t: int, T: int) -> dict:
    tr = ep.transitions(T)
    return {
        "observations": {k: v[t] for k, v in tr["observations"].items()},
        "actions": tr["actions"][t],
        "rewards": tr["rewards"][t],
        "terminated": tr["terminated"][t],
        "truncated": tr["truncated"][t],
        "next_observations": {k: v[t] for k, v in tr["next_observations"].items()},
    }


def corrupt(tr: dict, how: str) -> tuple[dict, str]:
    """Return a broken copy of a transition and the field name the error must mention."""
    tr = {k: dict(v) if isinstance(v, dict) else v for k, v in tr.items()}
    obs, nxt = tr["observations"], tr["next_observations"]
    if how == "missing key":
        del obs["state"]
        return tr, "observations: missing keys \\['state'\\]"
    if how == "extra key":
        nxt["depth"] = nxt["cam"]
        return tr, "next_observations: .*unexpected keys \\['depth'\\]"
    if how == "image shape":
        obs["cam"] = obs["cam"][..., :2]
        return tr, "observations\\['cam'\\]: expected shape"
    if how == "float image":
        nxt["cam"] = nxt["cam"].astype(np.float32)
        return tr, "next_observations\\['cam'\\]: dtype float32 cannot be stored as uint8"
    if how == "nan state":
        obs["state"] = obs["state"].copy()
        obs["state"][..., 1] = np.nan
        return tr, "observations\\['state'\\]: contains non-finite"
    if how == "inf action":
        tr["actions"] = np.array([np.inf, 0.0])
        return tr, "actions: contains non-finite"
    if how == "action shape":
        tr["actions"] = np.zeros(3)
        return tr, "actions: expected shape \\(2,\\)"
    if how == "nan reward":
        tr["rewards"] = float("nan")
        return tr, "rewards: contains non-finite"
    if how == "terminated value":
        tr["terminated"] = 0.5
        return tr, "terminated: expected booleans"
    if how == "truncated type":
        tr["truncated"] = "yes"
        return tr, "truncated: expected a numeric array"
    if how == "obs not a dict":
        tr["observations"] = obs["state"]
        return tr, "observations: expected a dict of arrays"
    raise AssertionError(how)


HOWS = [
    "missing key",
    "extra key",
    "image shape",
    "float image",
    "nan state",
    "inf action",
    "action shape",
    "nan reward",
    "terminated value",
    "truncated type",
    "obs not a dict",
]


def assert_same_state(buf, twin) -> None:
    """`buf` behaves exactly like `twin`, which never saw the bad input."""
    assert len(buf) == len(twin) and buf.nbytes == twin.nbytes
    a, b = buf.sample(32, np.random.default_rng(1)), twin.sample(32, np.random.default_rng(1))
    for key in ("actions", "rewards", "masks", "dones"):
        np.testing.assert_array_equal(a[key], b[key])
    for side in ("observations", "next_observations"):
        for k in a[side]:
            np.testing.assert_array_equal(a[side][k], b[side][k])


@pytest.mark.parametrize("kind", sorted(BUFFERS))
@pytest.mark.parametrize("T", [1, 2])
@pytest.mark.parametrize("how", HOWS)
def test_bad_transition_names_the_field_and_changes_nothing(kind, T, how):
    ep = episode(6, seed=0)
    buf, twin = BUFFERS[kind](T), BUFFERS[kind](T)
    for b in (buf, twin):  # an open episode: the bad insert must not disturb its continuation
        for t in range(3):
            b.insert(**transition(ep, t, T))
    bad, message = corrupt(transition(ep, 3, T), how)
    with pytest.raises(ValueError, match=message):
        buf.insert(**bad)
    for b in (buf, twin):
        b.insert(**transition(ep, 3, T))
    assert_same_state(buf, twin)


@pytest.mark.parametrize("kind", sorted(BUFFERS))
def test_bad_row_in_insert_many_inserts_nothing(kind):
    ep = episode(8, seed=1)
    buf, twin = BUFFERS[kind](1), BUFFERS[kind](1)
    buf.insert_episode(ep)
    twin.insert_episode(ep)
    many = ep.transitions(1)
    many["observations"] = {k: v.copy() for k, v in many["observations"].items()}
    many["observations"]["state"][5, 0] = np.inf
    with pytest.raises(ValueError, match="observations\\['state'\\]: contains non-finite"):
        buf.insert_many(**many)
    assert_same_state(buf, twin)


def test_insert_many_equals_inserting_one_by_one():
    ep = episode(7, seed=2)
    many, one = FrameReplayBuffer(SCHEMA, 32, 2), FrameReplayBuffer(SCHEMA, 32, 2)
    many.insert_many(**ep.transitions(2))
    for t in range(7):
        one.insert(**transition(ep, t, 2))
    assert_same_state(many, one)


def test_frame_buffer_rejects_next_stack_that_is_not_the_shifted_stack():
    ep = episode(4, seed=3)
    buf = FrameReplayBuffer(SCHEMA, 16, 2)
    tr = transition(ep, 1, 2)
    tr["next_observations"]["cam"] = tr["next_observations"]["cam"][::-1].copy()
    with pytest.raises(ValueError, match=r"next_observations\['cam'\]: frames 0\.\.T-2"):
        buf.insert(**tr)
    assert len(buf) == 0


@pytest.mark.parametrize("kind", sorted(BUFFERS))
def test_bad_episodes_are_rejected(kind):
    buf = BUFFERS[kind](1)
    ep = episode(5, seed=4)
    early = Episode(ep.observations, ep.actions, ep.rewards, np.eye(5, dtype=bool)[1], ep.truncated)
    with pytest.raises(ValueError, match="terminated: set before the last step"):
        buf.insert_episode(early)
    short = Episode(
        {k: v[:-1] for k, v in ep.observations.items()},
        ep.actions,
        ep.rewards,
        ep.terminated,
        ep.truncated,
    )
    with pytest.raises(ValueError, match=r"observations\['cam'\]: expected shape \(6, 4, 4, 3"):
        buf.insert_episode(short)
    empty = Episode(
        {k: v[:1] for k, v in ep.observations.items()},
        ep.actions[:0],
        ep.rewards[:0],
        ep.terminated[:0],
        ep.truncated[:0],
    )
    with pytest.raises(ValueError, match="rewards: an episode needs shape \\(L,\\) with L >= 1"):
        buf.insert_episode(empty)
    assert len(buf) == 0


def test_float64_state_and_int_flags_are_accepted_and_cast():
    buf = ReplayBuffer(SCHEMA, 4)
    obs = {"cam": np.zeros((4, 4, 3), np.uint8), "state": np.array([0.1, 0.2, 0.3])}
    buf.insert(obs, np.array([0.5, -0.5]), 1, 1, 0, obs)
    batch = buf.sample(2, np.random.default_rng(0))
    assert batch["observations"]["state"].dtype == np.float32
    np.testing.assert_array_equal(batch["masks"], [0.0, 0.0])
    np.testing.assert_array_equal(batch["dones"], [1.0, 1.0])
    np.testing.assert_array_equal(batch["rewards"], [1.0, 1.0])


def test_masks_stop_only_at_termination_and_dones_cover_truncation():
    buf = ReplayBuffer(SCHEMA, 8)
    ep = episode(3, seed=5)
    tr = ep.transitions(1)
    tr["terminated"] = np.array([False, False, False])
    tr["truncated"] = np.array([False, False, True])
    buf.insert_many(**tr)
    batch = buf.sample(64, np.random.default_rng(0))
    last = batch["rewards"] == ep.rewards[2]
    assert last.any() and (~last).any()
    np.testing.assert_array_equal(batch["masks"], 1.0)
    np.testing.assert_array_equal(batch["dones"], last.astype(np.float32))


def test_buffer_arguments_are_checked():
    with pytest.raises(ValueError, match="capacity"):
        FrameReplayBuffer(SCHEMA, 3, obs_horizon=3)
    with pytest.raises(ValueError, match="obs_horizon"):
        ReplayBuffer(SCHEMA, 8, obs_horizon=0)
    with pytest.raises(ValueError, match="jpeg_keys: 'state'"):
        FrameReplayBuffer(SCHEMA, 8, jpeg_keys=("state",))
    with pytest.raises(ValueError, match="jpeg quality"):
        FrameReplayBuffer(SCHEMA, 8, jpeg_keys=("cam",), jpeg_quality=0)
    buf = FrameReplayBuffer(SCHEMA, 8)
    with pytest.raises(ValueError, match="empty FrameReplayBuffer"):
        buf.sample(4, np.random.default_rng(0))
    buf.insert_episode(episode(2, seed=6))
    with pytest.raises(ValueError, match="batch_size"):
        buf.sample(0, np.random.default_rng(0))
    with pytest.raises(TypeError, match="numpy Generator"):
        buf.sample(4, np.random.RandomState(0))


def test_schema_roundtrips_through_json_and_is_hashable():
    assert Schema.from_json(SCHEMA.to_json()) == SCHEMA
    assert hash(Schema.from_json(SCHEMA.to_json())) == hash(SCHEMA)
    assert SCHEMA.image_keys == ("cam",)
    assert SCHEMA.obs_specs["state"] == ArraySpec((3,), "float32")
    inferred = Schema.from_example(
        {"state": np.zeros(3), "cam": np.zeros((4, 4, 3), np.uint8)}, np.zeros(2)
    )
    assert inferred == SCHEMA
    with pytest.raises(ValueError, match="observation key"):
        Schema.create({"a/b": ((1,), "float32")}, (1,))


def test_stack_frames_pads_with_the_first_frame():
    frames = np.arange(4)[:, None] * np.ones((1, 2))
    stacks = stack_frames(frames, 3)
    np.testing.assert_array_equal(stacks[..., 0], [[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3]])
    assert stack_frames(frames, 1) is frames
