"""Fault tests of the transport on loopback: outages, restarts, killed actors, late joiners."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from transport_helpers import SCHEMA, TOKEN, Store, check_exactly_once, transition

from serl.distributed import ActorClient, LearnerServer, codec

FAST = {"backoff": (0.02, 0.5), "max_delay": 0.01, "params_wait": 1.0}
ACTOR_SCRIPT = Path(__file__).parent / "transport_actor.py"


class EnvLoop:
    """Stands in for an actor's env loop: one `send` every `period` s, timing each call."""

    def __init__(self, client: ActorClient, period: float = 0.002) -> None:
        self.client, self.period = client, period
        self.steps, self.slowest, self.dropped = 0, 0.0, 0
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.perf_counter()
            if not self.client.send(transition(self.steps)):
                self.dropped += 1
            self.slowest = max(self.slowest, time.perf_counter() - start)
            self.steps += 1
            self._stop.wait(self.period)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.steps


def outage(outage_s: float, spill_dir: Path | None = None, max_queue_bytes: int = 1 << 30) -> None:
    """Learner up, then down for outage_s while the actor keeps stepping, then restarted from
    its checkpointed watermarks; the actor, never restarted, delivers everything exactly once."""
    store = Store()
    first = LearnerServer(TOKEN, SCHEMA, store.add)
    client = ActorClient(
        first.address,
        TOKEN,
        "a",
        SCHEMA,
        batch_size=32,
        spill_dir=spill_dir,
        max_queue_bytes=max_queue_bytes,
        **FAST,
    )
    loop = EnvLoop(client)
    try:
        assert store.wait(lambda s: len(s.ids()) >= 200, timeout=10)
        first.close(grace=0)
        watermarks = first.watermarks()  # what a checkpoint taken at the crash would hold
        steps_at_crash, connected_rate = loop.steps, loop.steps / (time.monotonic() - loop.started)
        time.sleep(outage_s)
        assert not client.stats()["connected"]
        # what an actor reports while it waits (the learner's last word: ending the long poll)
        assert client.silent_for() >= outage_s - 0.5
        # the actor kept stepping at its pace: an env loop held up by the network would make a
        # step per reconnection attempt (and machine load slows both periods alike)
        outage_rate = (loop.steps - steps_at_crash) / outage_s
        assert outage_rate > connected_rate / 4, (outage_rate, connected_rate)
        second = LearnerServer(TOKEN, SCHEMA, store.add, port=first.port, watermarks=watermarks)
        with second:
            time.sleep(0.5)
            total = loop.stop()
            assert client.flush(timeout=60), client.stats()
            stats = client.stats()
            assert stats["connected"] and second.stats()["batches/gap"] == 0
            assert client.silent_for() < 5.0
    finally:
        loop.stop()
        client.close(timeout=0)
    assert loop.dropped == 0 and stats["dropped"] == 0
    # send only enqueues, even with the learner gone: one that waited for it would last the
    # outage (the slowest call, ~1 ms on a quiet machine, is the scheduler's, not the network's)
    assert loop.slowest < outage_s / 2, loop.slowest
    check_exactly_once(store.ids(), range(total))
    seqs = store.seqs("a")
    assert seqs == list(range(1, len(seqs) + 1))
    if spill_dir is not None:
        assert stats["spilled"] > 0  # the outage overflowed the memory bound to disk
        assert not list(spill_dir.glob("*.npz"))


@pytest.mark.timeout(90)
def test_learner_unreachable_for_20s_everything_arrives_exactly_once() -> None:
    outage(20.0)


@pytest.mark.timeout(60)
def test_learner_restart_with_restored_watermarks_and_spill(tmp_path: Path) -> None:
    one = sum(a.nbytes for a in codec.flatten(transition(0)).values())
    outage(3.0, spill_dir=tmp_path / "spill", max_queue_bytes=100 * one)


@pytest.mark.timeout(60)
def test_spilled_queue_survives_a_client_restart(tmp_path: Path) -> None:
    store, spill = Store(), tmp_path / "spill"
    one = sum(a.nbytes for a in codec.flatten(transition(0)).values())
    with LearnerServer(TOKEN, SCHEMA, store.add) as server:
        port = server.port
        kwargs = {"spill_dir": spill, "max_queue_bytes": 64 * one, "batch_size": 16, **FAST}
        with ActorClient(server.address, TOKEN, "a", SCHEMA, **kwargs) as client:
            for i in range(100):
                assert client.send(transition(i))
                time.sleep(0.001)
            assert client.flush(timeout=10)
    address = f"127.0.0.1:{port}"  # nothing listens there now
    with ActorClient(address, TOKEN, "a", SCHEMA, **kwargs) as client:
        with pytest.raises(RuntimeError, match="in use by another client"):
            ActorClient(address, TOKEN, "b", SCHEMA, spill_dir=spill)
        for i in range(100, 1100):
            assert client.send(transition(i))
            time.sleep(0.001)  # an env step: the spiller writes to disk meanwhile
        time.sleep(0.2)
        assert client.stats()["spilled"] > 0
        client.close(timeout=0)  # learner still down: everything unsent stays on disk
    assert list(spill.glob("*.npz"))
    with pytest.raises(ValueError, match="belongs to actor 'a'"):
        ActorClient(address, TOKEN, "b", SCHEMA, spill_dir=spill)
    with (
        LearnerServer(TOKEN, SCHEMA, store.add, port=port, watermarks=server.watermarks()),
        ActorClient(address, TOKEN, "a", SCHEMA, **kwargs) as client,
    ):
        for i in range(1100, 1200):
            assert client.send(transition(i))
            time.sleep(0.001)
        assert client.flush(timeout=20)
        assert client.stats()["dropped"] == 0
    check_exactly_once(store.ids(), range(1200))
    assert store.ids() == list(range(1200))  # in order, too
    assert not list(spill.glob("*.npz"))


def test_a_slow_spill_write_delays_a_send_instead_of_dropping_it(tmp_path, monkeypatch) -> None:
    import serl.distributed.client as client_module

    write = client_module._write_npz

    def slow_write(*args):  # a disk (or a starved spill thread) at ~50 ms a chunk
        time.sleep(0.05)
        write(*args)

    monkeypatch.setattr(client_module, "_write_npz", slow_write)
    one = sum(a.nbytes for a in codec.flatten(transition(0)).values())
    kwargs = {"spill_dir": tmp_path, "max_queue_bytes": 32 * one, "batch_size": 8, **FAST}
    with ActorClient("127.0.0.1:9", TOKEN, "a", SCHEMA, **kwargs) as client:  # nobody listens
        sent = [client.send(transition(i)) for i in range(200)]  # faster than the disk
        assert all(sent) and client.stats()["dropped"] == 0
        client.close(timeout=0)
    kept = sum(np.load(f)["v"].size for f in tmp_path.glob("*.npz"))
    assert kept == 200  # on disk for the next client with this actor id


def spawn_actor(address: str, actor_id: str, start: int, count: int) -> subprocess.Popen:
    """A separate actor process (spawned, never forked: gRPC is loaded here)."""
    return subprocess.Popen(
        [sys.executable, str(ACTOR_SCRIPT), address, actor_id, str(start), str(count), "500"],
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.timeout(90)
def test_killed_actor_restarts_at_the_watermark_without_duplicates() -> None:
    store = Store()
    with LearnerServer(TOKEN, SCHEMA, store.add) as server:
        server.publish({"w": np.zeros(3, np.float32)}, 1)
        victim = spawn_actor(server.address, "a", 0, -1)
        try:
            assert victim.stdout.readline().strip() == "ready"
            assert store.wait(lambda s: len(s.ids()) >= 300, timeout=30)
            victim.send_signal(signal.SIGKILL)
            assert victim.wait(timeout=10) == -signal.SIGKILL
        finally:
            victim.kill()
        successor = spawn_actor(server.address, "a", 1_000_000, 300)
        out, _ = successor.communicate(timeout=60)
        assert successor.returncode == 0, out
        stats = server.stats()
        held = len(store.ids("a"))
        with ActorClient(server.address, TOKEN, "a", SCHEMA, watch_params=False, **FAST) as third:
            assert third.wait_connected(timeout=10) == held  # where a restarted actor goes on
    # ... also from a restarted learner, given the counts its replay holds
    with LearnerServer(TOKEN, SCHEMA, store.add, delivered={"a": held}) as server:
        with ActorClient(server.address, TOKEN, "a", SCHEMA, watch_params=False, **FAST) as fourth:
            assert fourth.wait_connected(timeout=10) == held
    victim_ids = [i for i in store.ids("a") if i < 1_000_000]
    # The killed process lost only its unacknowledged tail: what arrived is a prefix, once.
    check_exactly_once(victim_ids, range(len(victim_ids)))
    check_exactly_once(store.ids("a"), [*range(len(victim_ids)), *range(1_000_000, 1_000_300)])
    owners = ["victim" if b.data["id"][0] < 1_000_000 else "successor" for b in store.batches]
    k = owners.count("victim")
    assert k >= 2 and owners == ["victim"] * k + ["successor"] * (len(owners) - k)
    # numbered 1..n with no gap nor reuse: the successor's first batch is the watermark + 1
    assert store.seqs("a") == list(range(1, len(owners) + 1))
    assert stats["batches/duplicate"] == 0 and stats["batches/gap"] == 0


@pytest.mark.timeout(60)
def test_second_actor_joins_mid_run() -> None:
    store = Store()
    with LearnerServer(TOKEN, SCHEMA, store.add) as server:
        version = 1
        server.publish({"w": np.zeros(256, np.float32)}, version)
        first = ActorClient(server.address, TOKEN, "first", SCHEMA, **FAST)
        loop = EnvLoop(first)
        seen = []
        try:
            for _ in range(10):  # a learner publishing every 50 ms while the first actor runs
                time.sleep(0.05)
                version += 1
                server.publish({"w": np.full(256, version, np.float32)}, version)
                params = first.latest_params()
                seen.append(params[0] if params else 0)
            start = time.monotonic()
            # a long poll of 30 s: the current version must come at once, not when it ends
            late = {**FAST, "params_wait": 30.0}
            with ActorClient(server.address, TOKEN, "second", SCHEMA, **late) as second:
                got = second.wait_params(timeout=20.0)
                joined_in = time.monotonic() - start
                assert got is not None and joined_in < 10.0, joined_in
                assert got[0] == version and np.all(got[1]["w"] == version)
                for i in range(200):
                    second.send(transition(10_000 + i))
                assert second.flush(timeout=10)
            total = loop.stop()
            assert first.flush(timeout=10)
        finally:
            loop.stop()
            first.close(timeout=0)
    assert seen == sorted(seen) and seen[-1] > 1  # versions only move forward
    check_exactly_once(store.ids("second"), range(10_000, 10_200))
    check_exactly_once(store.ids("first"), range(total))
