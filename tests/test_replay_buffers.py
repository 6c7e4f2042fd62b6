"""Property tests: every sampled transition is exactly one that was inserted and is still held."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serl.data import Episode, FrameReplayBuffer, JpegCodec, ReplayBuffer, Schema

SCHEMA = Schema.create(
    {"front": ((8, 8, 3), "uint8"), "wrist": ((8, 8, 1), "uint8"), "state": ((2,), "float32")},
    action_shape=(2,),
)
# Cached image features (bfloat16 feature maps) in place of the cameras, as the learner's
# buffers hold them for a frozen backbone.
FEATURE_SCHEMA = Schema.create(
    {
        "front": ((2, 2, 4), "bfloat16"),
        "wrist": ((1, 1, 8), "bfloat16"),
        "state": ((2,), "float32"),
    },
    action_shape=(2,),
)
FIELDS = ("actions", "rewards", "masks", "dones")


def frame(g: int) -> dict[str, np.ndarray]:
    """Frame number g: every key encodes g, so any mix-up of frames is visible."""
    yy, xx = np.mgrid[0:8, 0:8]
    front = np.stack([np.full((8, 8), g % 256), np.full((8, 8), g // 256), 8 * yy + xx], -1)
    return {
        "front": front.astype(np.uint8),
        "wrist": ((g * 37 + 4 * xx) % 256).astype(np.uint8)[..., None],
        "state": np.array([g, -0.5 * g], np.float32),
    }


def feature_frame(g: int) -> dict[str, np.ndarray]:
    """Frame number g as feature maps: small integers, exact in bfloat16, each encoding g."""
    bf16 = FEATURE_SCHEMA.obs_specs["front"].np_dtype
    return {
        "front": ((g + np.arange(16)) % 251).reshape(2, 2, 4).astype(bf16),
        "wrist": (-(g % 127) * np.ones((1, 1, 8))).astype(bf16),
        "state": np.array([g, -0.5 * g], np.float32),
    }


def stack(frames: list[dict[str, np.ndarray]], t: int, T: int) -> dict[str, np.ndarray]:
    """Reference stack: frames t-T+1..t, clamped to the episode's first frame."""
    if T == 1:
        return frames[t]
    return {k: np.stack([frames[max(0, t - T + 1 + s)][k] for s in range(T)]) for k in frames[t]}


class Model:
    """What the buffer must hold: every inserted transition, and the tape of frames written."""

    def __init__(
        self,
        T: int,
        codec: JpegCodec | None = None,
        jpeg_keys: tuple[str, ...] = ("front", "wrist"),
        make_frame=frame,
        schema: Schema = SCHEMA,
    ) -> None:
        self.T, self.codec, self.jpeg_keys = T, codec, jpeg_keys
        self.make_frame, self.schema = make_frame, schema
        self.expected: dict[tuple[int, int], dict] = {}
        self.inserted: list[tuple[int, int]] = []  # transition keys in insertion order
        self.tape: dict[tuple[int, int], int] = {}  # frame (episode, t) -> write index
        self.written = 0
        self.next_frame = 0

    def episode(self, eid: int, length: int, end: str) -> tuple[list[dict], Episode]:
        frames = [self.make_frame(self.next_frame + i) for i in range(length + 1)]
        self.next_frame += length + 1
        done = np.arange(length) == length - 1
        ep = Episode(
            observations={k: np.stack([f[k] for f in frames]) for k in frames[0]},
            actions=np.stack([np.full(length, eid), np.arange(length)], 1).astype(np.float32),
            rewards=(np.arange(length) * 0.25 + eid).astype(np.float32),
            terminated=done & (end == "terminated"),
            truncated=done & (end == "truncated"),
        )
        seen = [self._decoded(f) for f in frames]
        for t in range(length):
            self.expected[(eid, t)] = {
                "observations": stack(seen, t, self.T),
                "next_observations": stack(seen, t + 1, self.T),
                "actions": ep.actions[t],
                "rewards": ep.rewards[t],
                "masks": np.float32(1 - ep.terminated[t]),
                "dones": np.float32(ep.terminated[t] | ep.truncated[t]),
            }
        return frames, ep

    def _decoded(self, f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What sampling returns for a frame: JPEG keys come back encoded then decoded."""
        if self.codec is None:
            return f
        out = dict(f)
        for k in self.jpeg_keys:
            out[k] = np.empty_like(f[k])
            self.codec.decode_into(self.codec.encode(f[k]), out[k])
        return out

    def write(self, eid: int, t: int) -> None:
        self.tape[(eid, t)] = self.written
        self.written += 1

    def frame_once_available(self, capacity: int) -> set[tuple[int, int]]:
        """Transitions whose frames (stack start .. next frame) are all among the last writes."""
        oldest = self.written - capacity
        return {
            (e, t) for (e, t) in self.inserted if self.tape[(e, t - min(self.T - 1, t))] >= oldest
        }


def check_batch(batch: dict, model: Model, available: set) -> set:
    """Every row equals the inserted transition its action names, exactly; return the names."""
    keys = [tuple(int(v) for v in a) for a in batch["actions"]]
    assert set(keys) <= available, sorted(set(keys) - available)
    for field in FIELDS:
        want = np.stack([model.expected[k][field] for k in keys])
        np.testing.assert_array_equal(batch[field], want)
        assert batch[field].dtype == np.float32
    for side in ("observations", "next_observations"):
        assert batch[side].keys() == model.schema.obs_specs.keys()
        for name, got in batch[side].items():
            want = np.stack([model.expected[k][side][name] for k in keys])
            assert got.dtype == want.dtype and got.shape == want.shape, (side, name)
            np.testing.assert_array_equal(got, want, err_msg=f"{side}[{name!r}]")
    return set(keys)


episodes_st = st.lists(
    st.tuples(
        st.integers(1, 7),  # length
        st.sampled_from(["terminated", "truncated", "none"]),  # how it ends
        st.booleans(),  # inserted as a whole episode (else transition by transition)
    ),
    min_size=1,
    max_size=12,
)


def held(model: Model, buf, frame_once: bool) -> set[tuple[int, int]]:
    """Transitions the buffer must hold now: by the frame tape, or the last `capacity` inserted."""
    if frame_once:
        return model.frame_once_available(buf.capacity)
    return set(model.inserted[-buf.capacity :])


def run_scenario(buf, model: Model, episodes: list, frame_once: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    T = model.T
    for eid, (length, end, whole) in enumerate(episodes):
        frames, ep = model.episode(eid, length, end)
        if whole:
            buf.insert_episode(ep)
            model.inserted += [(eid, t) for t in range(length)]
            for t in range(length + 1):
                model.write(eid, t)
        else:
            for t in range(length):
                buf.insert(
                    observations=stack(frames, t, T),
                    actions=ep.actions[t],
                    rewards=float(ep.rewards[t]),
                    terminated=bool(ep.terminated[t]),
                    truncated=bool(ep.truncated[t]),
                    next_observations=stack(frames, t + 1, T),
                )
                if t == 0:
                    model.write(eid, 0)
                model.write(eid, t + 1)
                model.inserted.append((eid, t))
                assert len(buf) == len(held(model, buf, frame_once))
                check_batch(buf.sample(16, rng), model, held(model, buf, frame_once))
        assert len(buf) == len(held(model, buf, frame_once))
        check_batch(buf.sample(16, rng), model, held(model, buf, frame_once))
    # Completeness: with 64 draws per held transition, every one of them shows up.
    available = held(model, buf, frame_once)
    assert check_batch(buf.sample(64 * len(available), rng), model, available) == available


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(T=st.integers(1, 3), extra=st.integers(0, 9), episodes=episodes_st, seed=st.integers(0, 99))
def test_frame_buffer_samples_exactly_what_was_inserted(T, extra, episodes, seed):
    buf = FrameReplayBuffer(SCHEMA, capacity=T + 1 + extra, obs_horizon=T)
    run_scenario(buf, Model(T), episodes, frame_once=True, seed=seed)


@SETTINGS
@given(T=st.integers(1, 3), extra=st.integers(0, 9), episodes=episodes_st, seed=st.integers(0, 99))
def test_frame_buffer_of_feature_maps_samples_exactly_what_was_inserted(T, extra, episodes, seed):
    buf = FrameReplayBuffer(FEATURE_SCHEMA, capacity=T + 1 + extra, obs_horizon=T)
    model = Model(T, make_frame=feature_frame, schema=FEATURE_SCHEMA)
    run_scenario(buf, model, episodes, frame_once=True, seed=seed)


@SETTINGS
@given(T=st.integers(1, 3), extra=st.integers(0, 9), episodes=episodes_st, seed=st.integers(0, 99))
def test_plain_buffer_samples_exactly_what_was_inserted(T, extra, episodes, seed):
    buf = ReplayBuffer(SCHEMA, capacity=T + 1 + extra, obs_horizon=T)
    run_scenario(buf, Model(T), episodes, frame_once=False, seed=seed)


@settings(max_examples=50, deadline=None)
@given(
    T=st.integers(1, 3),
    extra=st.integers(0, 9),
    episodes=episodes_st,
    seed=st.integers(0, 99),
    quality=st.integers(30, 100),
)
def test_jpeg_frames_decode_to_exactly_what_was_encoded(T, extra, episodes, seed, quality):
    buf = FrameReplayBuffer(
        SCHEMA, T + 1 + extra, T, jpeg_keys=("front", "wrist"), jpeg_quality=quality
    )
    run_scenario(buf, Model(T, codec=buf.codec), episodes, frame_once=True, seed=seed)


@SETTINGS
@given(T=st.integers(1, 3), extra=st.integers(0, 12), data=st.data())
def test_interleaved_streams_stay_exact(T, extra, data):
    """Several actors' transitions arriving interleaved, each stream joined mid-episode."""
    buf = FrameReplayBuffer(SCHEMA, capacity=T + 1 + extra, obs_horizon=T)
    model = Model(T)
    n_streams = data.draw(st.integers(1, 3))
    eps = [model.episode(eid, 8, "truncated") for eid in range(n_streams)]
    step = [data.draw(st.integers(0, 5)) for _ in eps]  # where each stream is joined
    schedule = data.draw(st.lists(st.integers(0, n_streams - 1), min_size=1, max_size=20))
    rng = np.random.default_rng(data.draw(st.integers(0, 99)))
    inserted: set[tuple[int, int]] = set()
    for eid in schedule:
        (frames, ep), t = eps[eid], step[eid]
        if t == len(ep):
            continue
        step[eid] += 1
        buf.insert(
            stack(frames, t, T),
            ep.actions[t],
            ep.rewards[t],
            ep.terminated[t],
            ep.truncated[t],
            stack(frames, t + 1, T),
        )
        inserted.add((eid, t))
        assert 1 <= len(buf) <= len(inserted)
        held = check_batch(buf.sample(64 * len(buf), rng), model, inserted)
        assert (eid, t) in held  # the newest transition is always kept


@pytest.mark.parametrize("T", [1, 2, 3])
def test_done_ends_the_episode_even_if_the_next_starts_with_the_same_frame(T):
    """After a done, a reset observation equal to the final one must not continue the stack."""
    buf = FrameReplayBuffer(SCHEMA, capacity=20, obs_horizon=T)
    a, b = frame(1), frame(2)
    padded = stack([a], 0, T)
    last = stack([frame(0), a], 1, T)  # previous episode: frame 0 -> a, terminated
    buf.insert(stack([frame(0)], 0, T), [0, 0], 0.0, True, False, last)
    buf.insert(padded, [1, 0], 0.0, False, False, stack([a, b], 1, T))  # new episode from a
    batch = buf.sample(200, np.random.default_rng(0))
    rows = batch["actions"][:, 0] == 1
    assert rows.any()
    for k, v in padded.items():
        np.testing.assert_array_equal(batch["observations"][k][rows], np.stack([v] * rows.sum()))


def test_sampling_is_uniform_over_held_transitions():
    """Rejection of invalid slots must not bias the draw (chi-square-style bound per cell)."""
    buf = FrameReplayBuffer(SCHEMA, capacity=40, obs_horizon=3)
    model = Model(3)
    for eid, length in enumerate([5, 1, 9, 2, 7, 3, 6, 4, 8]):
        buf.insert_episode(model.episode(eid, length, "terminated")[1])
    n, draws = len(buf), 200_000
    batch = buf.sample(draws, np.random.default_rng(0))
    _, counts = np.unique(batch["actions"], axis=0, return_counts=True)
    assert len(counts) == n
    expected = draws / n
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))


def test_jpeg_is_close_to_the_original_and_quality_matters():
    yy, xx = np.mgrid[0:64, 0:64]
    img = np.stack([2 * yy + xx, 255 - 3 * xx, 128 + 60 * np.sin(yy / 6)], -1).clip(0, 255)
    img = img.astype(np.uint8)
    img[20:36, 24:44] = (200, 30, 30)  # a cube with sharp edges
    sizes = {}
    for quality in (50, 90):
        codec = JpegCodec(quality)
        data = codec.encode(img)
        out = np.empty_like(img)
        codec.decode_into(data, out)
        mse = np.mean((out.astype(np.float64) - img) ** 2)
        psnr = 10 * np.log10(255**2 / mse)
        assert psnr > (30 if quality == 50 else 36), (quality, psnr)
        sizes[quality] = len(data)
    assert sizes[50] < sizes[90] < img.nbytes / 3


def test_episode_longer_than_capacity_keeps_its_latest_transitions():
    buf = FrameReplayBuffer(SCHEMA, capacity=6, obs_horizon=2)
    model = Model(2)
    buf.insert_episode(model.episode(0, 20, "truncated")[1])
    model.inserted += [(0, t) for t in range(20)]
    for t in range(21):
        model.write(0, t)
    available = model.frame_once_available(6)
    assert available == {(0, t) for t in range(16, 20)}  # frames 15..20 held; 16 needs 15
    seen = check_batch(buf.sample(500, np.random.default_rng(0)), model, available)
    assert seen == available


def test_sampling_while_another_thread_inserts_stays_exact():
    """The lock keeps batches consistent while the learner thread inserts (the peer's race)."""
    buf = FrameReplayBuffer(SCHEMA, capacity=64, obs_horizon=2, jpeg_keys=("wrist",))
    model = Model(2, codec=buf.codec, jpeg_keys=("wrist",))
    eps = [model.episode(eid, 9, "terminated") for eid in range(300)]
    buf.insert_episode(eps[0][1])
    everything = set(model.expected)
    stop = threading.Event()

    def writer():
        for frames, ep in eps[1:]:
            for t in range(len(ep)):
                buf.insert(
                    stack(frames, t, 2),
                    ep.actions[t],
                    ep.rewards[t],
                    ep.terminated[t],
                    ep.truncated[t],
                    stack(frames, t + 1, 2),
                )
        stop.set()

    thread = threading.Thread(target=writer)
    thread.start()
    rng = np.random.default_rng(0)
    while not stop.is_set():
        check_batch(buf.sample(64, rng), model, everything)
    thread.join()


def test_frame_buffer_stores_one_frame_per_step():
    """Storage is per frame: a frame-once buffer is about half a plain one of the same size."""
    flat, once = ReplayBuffer(SCHEMA, 100), FrameReplayBuffer(SCHEMA, 100)
    frame_bytes = sum(int(np.prod(s.shape)) * s.np_dtype.itemsize for _, s in SCHEMA.observations)
    assert flat.nbytes - once.nbytes == pytest.approx(100 * frame_bytes, rel=0.05)


@pytest.mark.parametrize("T", [1, 2])
def test_view_keys_give_each_sample_one_view_of_the_right_frame(T):
    K = 3
    schema = Schema.create({"cam": ((K, 2), "bfloat16"), "state": ((1,), "float32")}, (1,))
    buf = FrameReplayBuffer(schema, capacity=64, obs_horizon=T, view_keys=("cam",))
    L = 20
    frames = np.arange(L + 1)
    # view k of frame g holds (10 g + k, -g)
    cam = np.stack(
        [frames[:, None] * 10 + np.arange(K)[None], -frames[:, None] * np.ones(K)], axis=-1
    ).astype(schema.obs_specs["cam"].np_dtype)
    ep = Episode(
        {"cam": cam, "state": frames[:, None].astype(np.float32)},
        frames[:-1, None].astype(np.float32),
        np.zeros(L, np.float32),
        np.zeros(L, bool),
        np.arange(L) == L - 1,
    )
    if T == 1:
        buf.insert_episode(ep)
    else:
        buf.insert_many(**ep.transitions(T))
    batch = buf.sample(2000, np.random.default_rng(0))
    views = {}
    for side, shift in (("observations", 0), ("next_observations", 1)):
        got = np.asarray(batch[side]["cam"], np.float32)  # [B, (T,) 2]: the view axis is gone
        assert got.shape == (2000, *((T,) if T > 1 else ()), 2)
        newest = got[:, -1] if T > 1 else got
        g = batch["actions"][:, 0] + shift
        np.testing.assert_array_equal(newest[:, 1], -g)  # the right frame
        views[side] = newest[:, 0] - 10 * g
        assert set(views[side].tolist()) == {0, 1, 2}  # every view is drawn
        if T > 1:  # a stack's frames share one view
            np.testing.assert_array_equal(got[:, 0, 0] - 10 * -got[:, 0, 1], views[side])
    assert 0.25 < np.mean(views["observations"] != views["next_observations"]) < 0.9
    with pytest.raises(ValueError, match="view_keys"):
        FrameReplayBuffer(schema, 8, view_keys=("nope",))
