"""The data plane under Ray: serl's gRPC transport against Ray's own object passing, in the same
run: bench/results/ray_data_plane.json.

One producer process sends transitions to one consumer process as fast as back-pressure lets
it: through serl's transport (bench/transport.py's measurement: ActorClient -> LearnerServer,
acknowledged) and through Ray (a producer Ray actor calling a consumer Ray actor's method with a
stacked batch, at most 8 calls in flight; objects over Ray's inline limit go through its shared
object store). Same transitions, batches of the size serl's client sends.

    .venv/bin/python bench/ray_data_plane.py [--state 50000] [--vision 3000]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
from common import write_result
from transport import measure_throughput, state_transition, vision_transition

BATCH = {"state": 256, "vision_obs_only": 32}  # what serl's client sends per batch, about


def stacked(transitions: list[dict[str, Any]]) -> dict[str, Any]:
    """Transitions (one per env step, as an actor makes them) as one batch of stacked arrays."""
    first = transitions[0]
    return {
        k: stacked([t[k] for t in transitions])
        if isinstance(v, dict)
        else np.stack([t[k] for t in transitions])
        for k, v in first.items()
    }


class Consumer:
    """Counts what it is handed (the learner's side)."""

    def __init__(self) -> None:
        self.received = 0

    def push(self, batch: dict[str, Any]) -> int:
        self.received += len(batch["rewards"])
        return self.received


class Producer:
    """Sends n transitions in batches to a Consumer, at most 8 calls in flight."""

    def run(self, consumer: Any, kind: str, n: int) -> float:
        import ray

        one = state_transition() if kind == "state" else vision_transition(next_obs=False)
        pending: list[Any] = []
        start = time.monotonic()
        for _ in range(n // BATCH[kind]):
            # batched from single steps, as serl's client does (a copy of each step's arrays)
            steps = [{k: v for k, v in one.items()} for _ in range(BATCH[kind])]
            pending.append(consumer.push.remote(stacked(steps)))
            if len(pending) >= 8:
                ray.get(pending.pop(0))
        ray.get(pending)
        return time.monotonic() - start


def ray_throughput(kind: str, n: int) -> dict[str, Any]:
    """Transitions/s from a producer Ray actor to a consumer Ray actor."""
    import ray

    consumer = ray.remote(Consumer).remote()
    producer = ray.remote(Producer).remote()
    ray.get(producer.run.remote(consumer, kind, BATCH[kind] * 8))  # warm up both
    n = n // BATCH[kind] * BATCH[kind]
    seconds = ray.get(producer.run.remote(consumer, kind, n))
    return {
        "transitions": n,
        "seconds": round(seconds, 3),
        "transitions_per_s": round(n / seconds, 1),
    }


def main() -> None:
    import ray

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=int, default=50_000)
    parser.add_argument("--vision", type=int, default=3_000)
    args = parser.parse_args()
    counts = {"state": args.state, "vision_obs_only": args.vision}
    results: dict[str, Any] = {}
    for kind, n in counts.items():
        grpc = measure_throughput(kind, n)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            via_ray = ray_throughput(kind, n)
        finally:
            ray.shutdown()
        ratio = via_ray["transitions_per_s"] / grpc["transitions_per_s"]
        results[kind] = {"serl_grpc": grpc, "ray": via_ray, "ray_over_grpc": round(ratio, 3)}
    write_result(
        "ray_data_plane",
        {
            "command": "python bench/ray_data_plane.py",
            "batch_transitions": BATCH,
            "note": (
                "one producer and one consumer process on this 2-core machine; serl's figure "
                "includes its acknowledgements, Ray's its method-call returns"
            ),
            **results,
        },
    )


if __name__ == "__main__":
    main()
