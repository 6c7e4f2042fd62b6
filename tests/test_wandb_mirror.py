"""`serl train --wandb`: TensorBoard's scalars, the curve, the video and the config reach a W&B
run (offline, no account), a resume continues it without repeating a point, and the event-file
reader never takes half a record."""

import json
import struct
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from tensorboardX import SummaryWriter
from test_readme_commands import PENDULUM, SHORT, TINY_SAC, cwd, serl  # noqa: F401
from wandb.proto import wandb_internal_pb2

from serl.errors import ConfigError
from serl.train.wandb_mirror import WANDB_FILE, WandbMirror, read_scalars


def wandb_records(path: Path) -> list:
    """The records of an offline W&B run's .wandb file (a LevelDB-style log of protobufs)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pos, pending, block = [], 7, b"", 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack_from("<IHB", data, pos)
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            records.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return records


def history(run_dir: Path) -> list[dict]:
    """Every history row W&B stored for a serl run, over its offline sessions in order."""
    rows = []
    for path in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        for record in wandb_records(path):
            if record.WhichOneof("record_type") == "history":
                items = record.history.item  # a key with "/" is stored as its parts
                rows.append(
                    {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}
                )
    return rows


def logged_scalars(rows: list[dict]) -> list[tuple[str, int, float]]:
    """(tag, step, value) of W&B rows, the step read from the row's axis."""
    out = []
    for row in rows:
        (axis,) = {"learner_step", "env_step"} & row.keys() or {None}
        out += [(k, row[axis], v) for k, v in row.items() if axis and k[0] != "_" and k != axis]
    return out


def tensorboard_scalars(run: Path) -> list[tuple[str, int, float]]:
    return [s for path in sorted(run.glob("tb/*")) for s in read_scalars(path)[0]]


def test_read_scalars_takes_whole_records_only(tmp_path) -> None:
    writer = SummaryWriter(str(tmp_path / "tb"))
    for step in range(5):
        writer.add_scalar("critic/loss", 1.0 / (step + 1), step)
        writer.add_scalar("eval/success_rate", step / 4, step * 100)
    writer.close()
    (events,) = (tmp_path / "tb").glob("events.out.tfevents.*")
    whole, end = read_scalars(events)
    assert end == events.stat().st_size
    assert whole[:2] == [("critic/loss", 0, 1.0), ("eval/success_rate", 0, 0.0)]
    assert len(whole) == 10
    partial = tmp_path / "partial"  # as a reader finds a file the writer is flushing
    partial.write_bytes(events.read_bytes()[: end - 5])
    first, offset = read_scalars(partial)
    assert first == whole[:-1] and offset < end - 5
    rest, end2 = read_scalars(events, offset)  # the next read starts at that record
    assert first + rest == whole and end2 == end


@pytest.mark.timeout(600)
def test_pendulum_wandb_offline(cwd, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    tiny = ["--agent-overrides", json.dumps(TINY_SAC)]
    serl(PENDULUM[2], *SHORT, *tiny)
    run = cwd / "runs/Pendulum-v1/sac-s0"
    state = json.loads((run / WANDB_FILE).read_text())
    assert state["project"] == "serl-pendulum"
    rows = history(run)
    logged = logged_scalars(rows)
    assert sorted(logged) == sorted(tensorboard_scalars(run))  # each once, at its axis's step
    assert {"critic/loss", "actor/loss", "eval/success_rate"} <= {t for t, *_ in logged}
    assert ("eval/success_rate", 40) in {(t, s) for t, s, _ in logged}
    # media are stored flat ("learning_curve/_type"); Pendulum renders no video here
    (media,) = [r for r in rows if "learning_curve/_type" in r]
    assert media["learning_curve/_type"] == "image-file"
    # --resume without --wandb goes on in the same W&B run, from where it stopped
    serl(
        PENDULUM[0],
        *SHORT,
        *tiny,
        "--env-steps",
        "80",
        "--no-video",
        "--run-dir",
        str(run),
        "--resume",
    )
    assert json.loads((run / WANDB_FILE).read_text())["id"] == state["id"]
    assert len(list(run.glob("wandb/offline-run-*"))) == 2
    logged = logged_scalars(history(run))
    assert sorted(logged) == sorted(tensorboard_scalars(run))
    assert ("eval/success_rate", 80) in {(t, s) for t, s, _ in logged}


def test_axes_media_and_config(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "config.json").write_text(json.dumps({"env_id": "Pendulum-v1", "seed": 3}))
    writer = SummaryWriter(str(tmp_path / "tb"))
    writer.add_scalar("actor/loss", 0.5, 7)  # the policy's loss: a learner step
    writer.add_scalar("critic/loss", 2.0, 7)
    writer.add_scalar("rollout/episode_return", -3.0, 200)  # an episode's: an env step
    writer.add_scalar("actor/loss", 0.25, 8)
    writer.close()
    png, mp4 = tmp_path / "learning_curve.png", tmp_path / "eval.mp4"
    imageio.imwrite(png, np.zeros((8, 8, 3), np.uint8))
    imageio.mimwrite(mp4, [np.full((16, 16, 3), i * 40, np.uint8) for i in range(5)], fps=5)
    mirror = WandbMirror(tmp_path, "p")
    mirror.finish([png, mp4])
    (session,) = tmp_path.glob("wandb/offline-run-*")
    *scalars, row = history(tmp_path)
    assert [{k: v for k, v in r.items() if k[0] != "_"} for r in scalars] == [
        {"learner_step": 7, "actor/loss": 0.5, "critic/loss": 2.0},
        {"env_step": 200, "rollout/episode_return": -3.0},
        {"learner_step": 8, "actor/loss": 0.25},
    ]
    assert row["learning_curve/_type"] == "image-file"
    assert row["eval/_type"] == "video-file"
    assert (session / "files" / row["eval/path"]).read_bytes() == mp4.read_bytes()
    records = wandb_records(next(session.glob("*.wandb")))
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    values = {u.key: json.loads(u.value_json) for u in run.config.update}
    assert values["env_id"] == "Pendulum-v1" and values["seed"] == 3


def test_wandb_missing_says_how_to_install(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"serl\[wandb\]"):
        WandbMirror(tmp_path, "serl")
    assert not any(tmp_path.iterdir())  # nothing written
