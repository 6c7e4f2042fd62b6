"""Transport on loopback: transitions/s (state, vision) and parameter-broadcast latency.

The learner (a `LearnerServer` whose `on_transitions` only counts rows) runs in this process and
the actor (an `ActorClient`) in a spawned process, as in a real run. Throughput is the number of
transitions over the time from the actor's first `send` to the moment all of them are
acknowledged. Latency is from the `publish` call (serialisation included) to `wait_params`
returning the new tree in the actor process (CLOCK_MONOTONIC is system-wide on Linux).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import threading
import time
from typing import Any

import numpy as np
from common import write_result

from serl.distributed import ActorClient, LearnerServer, codec, schema_hash

TOKEN = "bench-token"
SCHEMA = schema_hash("bench")
MB = 1 << 20


def state_transition() -> dict[str, Any]:
    """PandaPickCube-v0 sized: 10-D observation, 4-D action (batch-contract fields)."""
    obs = {"state": np.zeros(10, np.float32)}
    return {
        "observations": obs,
        "actions": np.zeros(4, np.float32),
        "rewards": np.float32(0),
        "masks": np.float32(1),
        "dones": np.float32(0),
        "next_observations": obs,
    }


def vision_transition(next_obs: bool) -> dict[str, Any]:
    """Two 128x128x3 uint8 cameras + 7-D proprio; next_observations only if `next_obs`."""
    rng = np.random.default_rng(0)
    obs = {
        "front": rng.integers(0, 256, (128, 128, 3), dtype=np.uint8),
        "wrist": rng.integers(0, 256, (128, 128, 3), dtype=np.uint8),
        "state": np.zeros(7, np.float32),
    }
    t = {
        "observations": obs,
        "actions": np.zeros(4, np.float32),
        "rewards": np.float32(0),
        "masks": np.float32(1),
        "dones": np.float32(0),
    }
    return {**t, "next_observations": obs} if next_obs else t


def dense(rng: np.random.Generator, n_in: int, n_out: int) -> dict[str, np.ndarray]:
    return {
        "kernel": rng.standard_normal((n_in, n_out)).astype(np.float32),
        "bias": np.zeros(n_out, np.float32),
    }


def layer_norm(n: int) -> dict[str, np.ndarray]:
    return {"scale": np.ones(n, np.float32), "bias": np.zeros(n, np.float32)}


def mlp_actor(rng: np.random.Generator, n_in: int, n_act: int = 4) -> dict[str, Any]:
    """The SAC actor: MLP 256x256 with LayerNorm, mean and log-std heads."""
    return {
        "Dense_0": dense(rng, n_in, 256),
        "LayerNorm_0": layer_norm(256),
        "Dense_1": dense(rng, 256, 256),
        "LayerNorm_1": layer_norm(256),
        "mean": dense(rng, 256, n_act),
        "log_std": dense(rng, 256, n_act),
    }


def conv_encoder(rng: np.random.Generator) -> dict[str, Any]:
    """The small DrQ encoder: conv 32/64/128/256, kernel 3, stride 2, then Dense 256 + LN."""
    widths, params, c_in = (32, 64, 128, 256), {}, 3
    for i, c_out in enumerate(widths):
        kernel = rng.standard_normal((3, 3, c_in, c_out)).astype(np.float32)
        params[f"Conv_{i}"] = {"kernel": kernel, "bias": np.zeros(c_out, np.float32)}
        c_in = c_out
    params["bottleneck"] = {**dense(rng, 256, 256), "norm": layer_norm(256)}
    return params


def sac_params() -> dict[str, Any]:
    return {"actor": mlp_actor(np.random.default_rng(0), 10)}


def drq_params() -> tuple[dict[str, Any], dict[str, Any]]:
    """(encoders, head): one encoder per camera, proprio Dense 64, MLP on 2x256 + 64 features."""
    rng = np.random.default_rng(0)
    encoders = {"front": conv_encoder(rng), "wrist": conv_encoder(rng)}
    head = {"proprio": {**dense(rng, 7, 64), "norm": layer_norm(64)}, **mlp_actor(rng, 576)}
    return {"encoder": encoders}, {"head": head}


def count(tree: dict[str, Any]) -> int:
    return sum(a.size for a in codec.flatten(tree).values())


# -- the actor process --------------------------------------------------------------------


def throughput_actor(address: str, kind: str, n: int, out: Any) -> None:
    """Send n transitions as fast as possible, keeping ~256 MB queued at most; report timings."""
    t = state_transition() if kind == "state" else vision_transition(kind == "vision_obs_next")
    with ActorClient(address, TOKEN, kind, SCHEMA, watch_params=False) as client:
        one = codec.nbytes(t)
        client.send(t)
        assert client.flush(timeout=30)  # connected: time from here
        send_time, start = 0.0, time.monotonic()
        for i in range(n):
            if i % 64 == 0:
                while client.stats()["queued_bytes"] > 256 * MB:
                    time.sleep(0.001)  # back-pressure instead of dropping
            t0 = time.perf_counter()
            assert client.send(t)
            send_time += time.perf_counter() - t0
        assert client.flush(timeout=300)
        elapsed = time.monotonic() - start
        stats = client.stats()
    out.send(
        {
            "seconds": elapsed,
            "bytes_per_transition": one,
            "send_us": 1e6 * send_time / n,
            "dropped": stats["dropped"],
            "sent": stats["sent"] - 1,
        }
    )


def latency_actor(address: str, versions: int, ready: Any, out: Any) -> None:
    """Record when each parameter version arrives (system-wide monotonic clock)."""
    with ActorClient(address, TOKEN, "latency", SCHEMA) as client:
        got = client.wait_params(timeout=60)
        ready.set()
        arrivals: dict[int, float] = {}
        while got is not None and got[0] < versions:
            got = client.wait_params(after=got[0], timeout=60)
            if got is not None:
                arrivals[got[0]] = time.monotonic()
    out.send(arrivals)


# -- the learner side ---------------------------------------------------------------------


def measure_throughput(kind: str, n: int) -> dict[str, Any]:
    received = [0]
    lock = threading.Lock()

    def on_transitions(batch: Any) -> None:
        with lock:
            received[0] += len(batch)

    ctx = mp.get_context("spawn")  # never fork a process that has loaded gRPC
    with LearnerServer(TOKEN, SCHEMA, on_transitions) as server:
        recv, send = ctx.Pipe(duplex=False)
        actor = ctx.Process(target=throughput_actor, args=(server.address, kind, n, send))
        actor.start()
        result = recv.recv()
        actor.join()
        batches = server.stats()["batches/received"]
    rate = n / result["seconds"]
    return {
        "transitions": n,
        "received": received[0] - 1,
        "seconds": round(result["seconds"], 3),
        "transitions_per_s": round(rate, 1),
        "mb_per_s": round(rate * result["bytes_per_transition"] / MB, 1),
        "bytes_per_transition": result["bytes_per_transition"],
        "batches": batches,
        "send_call_us": round(result["send_us"], 2),
        "dropped": result["dropped"],
    }


def measure_latency(
    dynamic: dict[str, Any], static: dict[str, Any] | None, versions: int, period: float
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    with LearnerServer(TOKEN, SCHEMA, lambda batch: None) as server:
        server.publish(dynamic, 1, static=static)
        recv, send = ctx.Pipe(duplex=False)
        ready = ctx.Event()
        actor = ctx.Process(target=latency_actor, args=(server.address, versions, ready, send))
        actor.start()
        assert ready.wait(60)
        published, publish_s = {}, []
        for v in range(2, versions + 1):
            time.sleep(period)
            published[v] = time.monotonic()
            server.publish(dynamic, v)
            publish_s.append(time.monotonic() - published[v])
        arrivals = recv.recv()
        actor.join()
    ms = sorted(1000 * (arrivals[v] - published[v]) for v in arrivals)
    return {
        "dynamic_params": count(dynamic),
        "static_params": count(static) if static else 0,
        "dynamic_mb": round(codec.nbytes(dynamic) / MB, 3),
        "publishes": versions - 1,
        "applied": len(ms),
        "latency_ms_median": round(statistics.median(ms), 2),
        "latency_ms_p90": round(ms[int(0.9 * (len(ms) - 1))], 2),
        "latency_ms_max": round(ms[-1], 2),
        "publish_call_ms_median": round(1000 * statistics.median(publish_s), 2),
    }


def main() -> None:
    """Measure and write bench/results/transport.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    load_before = os.getloadavg()[0]
    throughput = {
        "state": measure_throughput("state", int(50_000 * scale)),
        "vision_obs_only": measure_throughput("vision_obs", int(3000 * scale)),
        "vision_obs_next": measure_throughput("vision_obs_next", int(2000 * scale)),
    }
    versions = 6 if args.quick else 31
    encoders, head = drq_params()
    latency = {
        "sac_state_actor": measure_latency(sac_params(), None, versions, 0.2),
        "drq_actor": measure_latency({**encoders, **head}, None, versions, 0.2),
        "drq_actor_frozen_encoder_static": measure_latency(head, encoders, versions, 0.2),
    }
    load = max(load_before, os.getloadavg()[0])
    busy = "busy: other engineers' jobs were running" if load > 0.5 else "quiet"
    write_result(
        "transport",
        {
            "quick": args.quick,
            "note": f"machine {busy} (1-min load average up to {load:.2f} on 2 cores); "
            "learner and actor in separate processes on loopback; on_transitions only counts "
            "rows (no storage). vision_obs_only sends each step's frames once (the learner's "
            "image buffer rebuilds next_observations from the next row); vision_obs_next sends "
            "observations and next_observations. Latency: publish() call to the new tree "
            "returned by wait_params() in the actor, idle link, one publish every 0.2 s.",
            "transitions": throughput,
            "param_broadcast": latency,
        },
    )


if __name__ == "__main__":
    main()
