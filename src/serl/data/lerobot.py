"""LeRobotDataset v3.0 (the format LeRobot 0.4 writes and reads) to and from serl episodes.

A serl episode of L steps becomes L + 1 LeRobot frames: frame t < L holds observation t, action
t and that step's result (`next.reward`, `next.done`, `next.truncated`); frame L holds the final
observation alone (`complementary_info.final_observation`, a zero action, done), so a round trip
keeps every transition, the terminal one's next observation included. Features:

    serl                            LeRobot
    observations[k] (float vectors) observation.state, concatenated in key order, each entry
                                    named "k[i]" (what LeRobot's policies read as the state)
    observations[k] (uint8 HxWx3)   observation.images.k (video: one mp4 per camera)
    actions                         action
    rewards                         next.reward
    terminated or truncated         next.done
    truncated                       next.truncated
    attrs["intervened"] (steps)     complementary_info.is_intervention
    the episode's success           complementary_info.success
    attrs (JSON)                    complementary_info.serl_attrs (on the final frame)

Read back, observation.state splits into keys by those names (else it is the key "state"),
another observation.X vector is the key X, and a dataset LeRobot wrote has no final frames:
each of its frames is a transition and the last one's next observation repeats its own (as
LeRobot's own RL buffer does); `next.done` without `next.truncated` reads as terminated.
Tables are read and written with pyarrow, videos with PyAV (AV1, as LeRobot encodes by
default); both are the `lerobot` extra.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serl.data.episode_store import built_beside
from serl.data.schema import Episode, Schema
from serl.errors import ConfigError, PathNotFound

CODEBASE_VERSION = "v3.0"
IMAGES = "observation.images."
FINAL = "complementary_info.final_observation"
INTERVENTION = "complementary_info.is_intervention"
SUCCESS = "complementary_info.success"
ATTRS = "complementary_info.serl_attrs"
DATA_FILE = "data/chunk-000/file-000.parquet"
EPISODES_FILE = "meta/episodes/chunk-000/file-000.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)


@dataclass(frozen=True)
class VideoSettings:
    """How camera frames are encoded: LeRobot's defaults (AV1, yuv420p, CRF 30, GOP 2)."""

    codec: str = "libsvtav1"
    crf: int = 30
    gop: int = 2
    pix_fmt: str = "yuv420p"


def _imports() -> tuple[Any, Any, Any]:
    try:
        import av
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ConfigError(
            "LeRobotDataset needs pyarrow and PyAV: pip install 'serl[lerobot]'"
        ) from e
    return av, pa, pq


STATE = "observation.state"
_ENTRY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\[(\d+)\]$")


def state_names(schema: Schema) -> list[str]:
    """The names of observation.state's entries: "key[i]" for the schema's vector keys."""
    return [
        f"{key}[{i}]"
        for key, spec in schema.observations
        if key not in schema.image_keys
        for i in range(int(np.prod(spec.shape)))
    ]


def state_keys(names: Any, size: int) -> list[tuple[str, int]]:
    """(key, size) of each key in observation.state, from its entries' names ("key[i]", in
    order); [("state", size)] for names of another form."""
    parsed = [_ENTRY.match(str(n)) for n in (names or [])]
    if len(parsed) != size or not all(parsed):
        return [("state", size)]
    keys: list[tuple[str, int]] = []
    for match in parsed:
        key, index = match.group(1), int(match.group(2))
        if keys and keys[-1][0] == key and index == keys[-1][1]:
            keys[-1] = (key, index + 1)
        elif index == 0 and key not in dict(keys):
            keys.append((key, 1))
        else:
            return [("state", size)]
    return keys


# -- writing ----------------------------------------------------------------------------------


def write_lerobot(
    out: Path,
    schema: Schema,
    episodes: Iterable[tuple[Episode, dict[str, Any], bool]],
    fps: int,
    task: str,
    video: VideoSettings = VideoSettings(),
) -> dict[str, Any]:
    """Write (episode, attrs, success) triples as a LeRobotDataset directory `out`, complete or
    not at all (built beside it, then renamed); a summary."""
    av, pa, pq = _imports()
    for key, spec in schema.observations:
        if key not in schema.image_keys and (len(spec.shape) != 1 or spec.dtype != "float32"):
            raise ConfigError(
                f"observation {key!r} is {spec.dtype} {spec.shape}: LeRobot's observation.state "
                "holds float32 vectors (and images are HxWx3 uint8)"
            )
    with built_beside(out) as tmp:
        tmp.mkdir()
        summary = _write(tmp, schema, episodes, fps, task, video, av, pa, pq)
    return {"out": str(out), **summary}


def _write(tmp, schema, episodes, fps, task, video, av, pa, pq) -> dict[str, Any]:
    vectors = [k for k, _ in schema.observations if k not in schema.image_keys]
    writers = {k: _VideoWriter(tmp, IMAGES + k, fps, video, av) for k in schema.image_keys}
    columns: dict[str, list[np.ndarray]] = {}
    meta: list[dict[str, Any]] = []
    total = 0
    try:
        for index, (episode, attrs, success) in enumerate(episodes):
            n = len(episode) + 1  # the final observation's frame too
            frames = _episode_columns(episode, attrs, success, vectors, fps)
            frames |= {"episode_index": np.full(n, index), "index": total + np.arange(n)}
            for name, values in frames.items():
                columns.setdefault(name, []).append(values)
            row = {
                "episode_index": index,
                "tasks": [task],
                "length": n,
                "data/chunk_index": 0,
                "data/file_index": 0,
                "dataset_from_index": total,
                "dataset_to_index": total + n,
            }
            for key, writer in writers.items():
                start = writer.frames
                writer.add(episode.observations[key])
                row |= {
                    f"videos/{IMAGES}{key}/chunk_index": 0,
                    f"videos/{IMAGES}{key}/file_index": 0,
                    f"videos/{IMAGES}{key}/from_timestamp": start / fps,
                    f"videos/{IMAGES}{key}/to_timestamp": writer.frames / fps,
                }
            meta.append(row | {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
            total += n
    finally:
        for writer in writers.values():
            writer.close()
    if not meta:
        raise ConfigError("no episodes to export")
    data = {name: np.concatenate(parts) for name, parts in columns.items()}
    features = _features(schema, vectors, data, fps, video)
    _write_table(pa, pq, tmp / DATA_FILE, data, features)
    _write_episodes(pa, pq, tmp / EPISODES_FILE, meta)
    _write_tasks(pa, pq, tmp / "meta/tasks.parquet", [task])
    (tmp / "meta/stats.json").write_text(json.dumps(_stats(data, features, writers), indent=2))
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": None,
        "total_episodes": len(meta),
        "total_frames": total,
        "total_tasks": 1,
        "chunks_size": 1000,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 200,
        "fps": fps,
        "splits": {"train": f"0:{len(meta)}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if writers else None,
        "features": features,
    }
    (tmp / "meta/info.json").write_text(json.dumps(info, indent=4))
    return {"episodes": len(meta), "frames": total, "cameras": list(writers), "fps": fps}


def _episode_columns(episode, attrs, success, vectors, fps) -> dict[str, np.ndarray]:
    """An episode's L + 1 rows of every non-video column."""
    n = len(episode)
    flags = np.zeros(n + 1, bool)
    flags[np.asarray(attrs.get("intervened", []), np.int64)] = True
    final = np.arange(n + 1) == n
    done = np.append(episode.terminated | episode.truncated, True)
    attrs_json = np.full(n + 1, "", object)
    # the store's own "length" is the episode's; "intervened" has its own column
    attrs_json[-1] = json.dumps(
        {k: v for k, v in attrs.items() if k not in ("intervened", "length")}
    )
    return {
        **(
            {STATE: np.concatenate([episode.observations[k] for k in vectors], 1)}
            if vectors
            else {}
        ),
        "action": np.concatenate([episode.actions, np.zeros_like(episode.actions[:1])]),
        "next.reward": np.append(episode.rewards, np.float32(0)),
        "next.done": done,
        "next.truncated": np.append(episode.truncated, False),
        INTERVENTION: flags,
        SUCCESS: np.full(n + 1, bool(success)),
        FINAL: final,
        ATTRS: attrs_json,
        "timestamp": (np.arange(n + 1) / fps).astype(np.float32),
        "frame_index": np.arange(n + 1),
        "task_index": np.zeros(n + 1, np.int64),
    }


def _features(schema, vectors, data, fps, video) -> dict[str, Any]:
    features: dict[str, Any] = {}
    if vectors:
        names = state_names(schema)
        features[STATE] = {"dtype": "float32", "shape": [len(names)], "names": names}
    for key in schema.image_keys:
        h, w, c = schema.obs_specs[key].shape
        features[IMAGES + key] = {
            "dtype": "video",
            "shape": [h, w, c],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": h,
                "video.width": w,
                "video.codec": "av1" if "av1" in video.codec else video.codec,
                "video.pix_fmt": video.pix_fmt,
                "video.is_depth_map": False,
                "video.fps": fps,
                "video.channels": c,
                "has_audio": False,
            },
        }
    for name in (
        "action",
        "next.reward",
        "next.done",
        "next.truncated",
        INTERVENTION,
        SUCCESS,
        FINAL,
        ATTRS,
    ):
        values = data[name]
        dtype = "string" if values.dtype == object else np.dtype(values.dtype).name
        shape = list(values.shape[1:]) or [1]
        features[name] = {"dtype": dtype, "shape": shape, "names": None}
    for name in INDEX_COLUMNS:
        dtype = "float32" if name == "timestamp" else "int64"
        features[name] = {"dtype": dtype, "shape": [1], "names": None}
    return features


def _write_table(pa, pq, path: Path, data: dict[str, np.ndarray], features: dict) -> None:
    arrays, names = [], []
    for name, feature in features.items():
        if feature["dtype"] == "video":
            continue
        values = data[name]
        if values.ndim == 2:  # a vector per frame: a fixed-size list, as LeRobot writes it
            flat = pa.array(values.astype(feature["dtype"]).reshape(-1))
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, values.shape[1]))
        elif values.dtype == object:
            arrays.append(pa.array(values.tolist(), pa.string()))
        else:
            arrays.append(pa.array(values.astype(feature["dtype"])))
        names.append(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(arrays, names=names), path)


def _write_episodes(pa, pq, path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def _write_tasks(pa, pq, path: Path, tasks: list[str]) -> None:
    """meta/tasks.parquet as pandas writes a frame indexed by task (LeRobot reads it so)."""
    table = pa.table(
        {"task_index": pa.array(range(len(tasks)), pa.int64()), "__index_level_0__": tasks}
    )
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": None,
                "field_name": "__index_level_0__",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }
    table = table.replace_schema_metadata({"pandas": json.dumps(pandas_meta)})
    pq.write_table(table, path)


def _stats(data: dict[str, np.ndarray], features: dict, writers: dict) -> dict[str, Any]:
    """meta/stats.json: min, max, mean, std, count and quantiles per feature (images per
    channel, in [0, 1], from the frames the video writers saw)."""
    stats = {}
    for name, feature in features.items():
        if feature["dtype"] in ("video", "string"):
            continue
        values = data[name].astype(np.float64).reshape(len(data[name]), -1)
        stats[name] = _summary(values, axis=0)
    for key, writer in writers.items():
        pixels = np.concatenate(writer.samples).reshape(-1, 3) / 255.0
        stats[IMAGES + key] = {
            k: (np.asarray(v).reshape(3, 1, 1).tolist() if k != "count" else v)
            for k, v in _summary(pixels, axis=0).items()
        }
    return stats


def _summary(values: np.ndarray, axis: int) -> dict[str, Any]:
    out = {
        "min": values.min(axis).tolist(),
        "max": values.max(axis).tolist(),
        "mean": values.mean(axis).tolist(),
        "std": values.std(axis).tolist(),
        "count": [len(values)],
    }
    for q in QUANTILES:
        out[f"q{round(q * 100):02d}"] = np.quantile(values, q, axis=axis).tolist()
    return out


class _VideoWriter:
    """One camera's frames into one mp4, frame i at i / fps (LeRobot seeks by timestamp)."""

    def __init__(self, root: Path, key: str, fps: int, video: VideoSettings, av: Any) -> None:
        path = root / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1's banner and info lines: errors only
        self.av = av
        self.container = av.open(str(path), "w")
        self.stream = self.container.add_stream(
            video.codec, fps, options={"g": str(video.gop), "crf": str(video.crf)}
        )
        self.stream.pix_fmt = video.pix_fmt
        self.frames = 0
        self.samples: list[np.ndarray] = []  # frames for the pixel statistics

    def add(self, frames: np.ndarray) -> None:
        """Encode frames [N, H, W, 3] uint8."""
        if self.frames == 0:
            self.stream.height, self.stream.width = frames.shape[1:3]
        for frame in frames:
            if self.frames % 10 == 0 and len(self.samples) < 500:  # every 10th, subsampled
                self.samples.append(frame[::2, ::2])
            video_frame = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), "rgb24")
            video_frame.pts = self.frames
            self.container.mux(self.stream.encode(video_frame))
            self.frames += 1

    def close(self) -> None:
        """Flush the encoder and close the file."""
        if self.frames:
            self.container.mux(self.stream.encode())
        self.container.close()


# -- reading ----------------------------------------------------------------------------------


class LeRobotReader:
    """A LeRobotDataset v3.0 directory read as serl episodes (features serl has no place for
    are listed in `dropped`)."""

    def __init__(self, root: Path) -> None:
        self.av, self.pa, self.pq = _imports()
        self.root = Path(root)
        info_path = self.root / "meta/info.json"
        if not info_path.exists():
            raise PathNotFound(
                f"{root}: not a LeRobotDataset (no meta/info.json); serl reads LeRobot's "
                f"{CODEBASE_VERSION} layout"
            )
        self.info = json.loads(info_path.read_text())
        version = self.info.get("codebase_version")
        if version != CODEBASE_VERSION:
            raise ConfigError(
                f"{root}: LeRobotDataset {version}; serl reads {CODEBASE_VERSION} (LeRobot 0.4 "
                "converts older datasets)"
            )
        self.fps = int(self.info["fps"])
        self.features: dict[str, Any] = self.info["features"]
        if "action" not in self.features:
            raise ConfigError(f"{root}: no action feature; serl needs actions to learn from")
        self.schema = self._schema()
        read = {"action", "next.reward", "next.done", "next.truncated", *INDEX_COLUMNS}
        read |= {INTERVENTION, SUCCESS, FINAL, ATTRS}
        self.dropped = [  # features serl has no place for (e.g. other complementary_info)
            n for n in self.features if n not in read and not n.startswith("observation.")
        ]
        self.ours = FINAL in self.features  # written by serl: a final frame per episode

    def _schema(self) -> Schema:
        obs: dict[str, tuple[tuple[int, ...], Any]] = {}
        for name, feature in self.features.items():
            if not name.startswith("observation."):
                continue
            shape = tuple(feature["shape"])
            if feature["dtype"] in ("video", "image"):
                if list(feature.get("names") or [])[:1] == ["channels"]:  # decoded HxWxC
                    shape = (*shape[1:], shape[0])
                obs[_obs_key(name)] = (shape, np.uint8)
            elif name == STATE and len(shape) == 1:
                for key, size in state_keys(feature.get("names"), shape[0]):
                    obs[key] = ((size,), np.float32)
            else:
                dtype = np.float32 if "float" in feature["dtype"] else feature["dtype"]
                obs[_obs_key(name)] = (shape, dtype)
        if not obs:
            raise ConfigError(f"{self.root}: no observation.* features")
        return Schema.create(obs, tuple(self.features["action"]["shape"]))

    def __len__(self) -> int:
        return int(self.info["total_episodes"])

    def episodes(self) -> Iterator[tuple[Episode, dict[str, Any]]]:
        """Each episode with its attrs (intervened steps, success, the task, its index)."""
        table = self.pq.read_table(sorted((self.root / "data").glob("*/*.parquet")))
        data = {name: table.column(name) for name in table.column_names}
        order = np.argsort(np.asarray(data["index"]))
        meta_files = sorted((self.root / "meta/episodes").glob("*/*.parquet"))
        rows = self.pq.read_table(meta_files).to_pylist()
        videos = _VideoReader(self.root, self.info, self.av)
        for row in sorted(rows, key=lambda r: r["episode_index"]):
            take = order[row["dataset_from_index"] : row["dataset_to_index"]]
            frames = {name: _column(self.pa, data[name], take) for name in data}
            yield self._episode(frames, self._observations(frames, videos, row), row)

    def _observations(self, frames, videos, row) -> dict[str, np.ndarray]:
        """An episode's observation arrays by serl key."""
        obs = {}
        for name, feature in self.features.items():
            if not name.startswith("observation."):
                continue
            if feature["dtype"] == "video":
                obs[_obs_key(name)] = videos.frames(name, row, len(frames["index"]))
            elif feature["dtype"] == "image":
                obs[_obs_key(name)] = _decode_images(frames[name])
            elif name == STATE and frames[name].ndim == 2:
                state = frames[name]
                keys = state_keys(feature.get("names"), state.shape[1])
                edges = np.cumsum([0] + [size for _, size in keys])
                for (key, _), a, b in zip(keys, edges[:-1], edges[1:], strict=True):
                    obs[key] = state[:, a:b]
            else:
                obs[_obs_key(name)] = frames[name]
        return obs

    def _episode(self, frames, obs, row) -> tuple[Episode, dict[str, Any]]:
        n = len(frames["action"])
        if self.ours:  # the last frame is the final observation, not a transition
            steps = slice(0, n - 1)
        else:  # each frame a transition; the last one's next observation repeats its own
            obs = {k: np.concatenate([v, v[-1:]]) for k, v in obs.items()}
            steps = slice(0, n)
        reward = _flat(frames.get("next.reward"), n, np.float32)[steps]
        done = _flat(frames.get("next.done"), n, bool)[steps]
        truncated = _flat(frames.get("next.truncated"), n, bool)[steps]
        where = np.flatnonzero(done[:-1])
        if len(where):
            raise ConfigError(
                f"{self.root}: episode {row['episode_index']} has next.done at frame "
                f"{where[0]} of {len(done)}; serl episodes end at their done"
            )
        attrs: dict[str, Any] = {"task": (row.get("tasks") or [""])[0]}
        if ATTRS in frames and frames[ATTRS][-1]:
            attrs |= json.loads(frames[ATTRS][-1])
        attrs["lerobot_episode_index"] = int(row["episode_index"])
        intervened = np.flatnonzero(_flat(frames.get(INTERVENTION), n, bool)[steps])
        if len(intervened):
            attrs["intervened"] = intervened.tolist()
        if SUCCESS in frames:
            attrs["success"] = bool(_flat(frames[SUCCESS], n, bool).any())
        episode = Episode(
            observations=obs,
            actions=np.asarray(frames["action"], np.float32)[steps],
            rewards=reward,
            terminated=done & ~truncated,
            truncated=truncated,
        )
        return episode, attrs


def _obs_key(feature: str) -> str:
    """The serl key of a camera (observation.images.K) or another observation.X feature."""
    if feature.startswith(IMAGES):
        return feature.removeprefix(IMAGES)
    return feature.removeprefix("observation.").replace(".", "_")


def _column(pa: Any, column: Any, take: np.ndarray) -> np.ndarray:
    """Rows `take` of a pyarrow column as numpy (fixed-size lists as 2-D arrays; strings and
    images stored in the table as objects)."""
    picked = column.take(take).combine_chunks()
    kind = picked.type
    if pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind):
        width = len(picked[0]) if len(picked) else 0
        return np.asarray(picked.flatten()).reshape(len(take), width)
    if pa.types.is_primitive(kind):
        return np.asarray(picked)
    return np.asarray(picked.to_pylist(), object)


def _flat(values: np.ndarray | None, n: int, dtype: Any) -> np.ndarray:
    return np.zeros(n, dtype) if values is None else np.asarray(values).reshape(n).astype(dtype)


def _decode_images(cells: np.ndarray) -> np.ndarray:
    import imageio.v3 as iio

    return np.stack([iio.imread(cell["bytes"])[..., :3] for cell in cells]).astype(np.uint8)


class _VideoReader:
    """Decodes a camera's mp4 files, one file at a time, by frame timestamp."""

    def __init__(self, root: Path, info: dict[str, Any], av: Any) -> None:
        self.root, self.info, self.av = root, info, av
        self.fps = int(info["fps"])
        self.cached: tuple[Path, dict[int, np.ndarray]] | None = None

    def frames(self, key: str, row: dict[str, Any], n: int) -> np.ndarray:
        """An episode's n frames of camera `key`."""
        path = self.root / self.info["video_path"].format(
            video_key=key,
            chunk_index=row[f"videos/{key}/chunk_index"],
            file_index=row[f"videos/{key}/file_index"],
        )
        if not path.exists():
            raise PathNotFound(f"{self.root}: camera {key}'s video {path} is missing")
        decoded = self._decoded(path)
        start = round(row[f"videos/{key}/from_timestamp"] * self.fps)
        missing = [i for i in range(start, start + n) if i not in decoded]
        if missing:
            raise ConfigError(f"{path}: no frame at {missing[0] / self.fps:.3f} s")
        return np.stack([decoded[i] for i in range(start, start + n)])

    def _decoded(self, path: Path) -> dict[int, np.ndarray]:
        if self.cached is None or self.cached[0] != path:
            with self.av.open(str(path)) as container:
                stream = container.streams.video[0]
                frames = {
                    round(float(frame.pts * stream.time_base) * self.fps): frame.to_ndarray(
                        format="rgb24"
                    )
                    for frame in container.decode(stream)
                }
            self.cached = (path, frames)
        return self.cached[1]


def is_lerobot_dataset(path: Path) -> bool:
    """Whether `path` looks like a LeRobotDataset directory."""
    return (Path(path) / "meta/info.json").is_file()
