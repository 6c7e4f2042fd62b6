"""Learner server and actor client on loopback: refusals, dedup, acks, parameters, reports."""

from __future__ import annotations

import socket
import time

import grpc
import numpy as np
import pytest
from transport_helpers import SCHEMA, TOKEN, Store, check_exactly_once, transition

from serl.distributed import PROTOCOL_VERSION, ActorClient, LearnerServer, TransportError, codec
from serl.distributed.proto import transport_pb2 as pb
from serl.distributed.proto import transport_pb2_grpc as pb_grpc

pytestmark = pytest.mark.timeout(60)
MD = (("x-serl-token", TOKEN),)
FAST = {"backoff": (0.02, 0.2), "max_delay": 0.01, "params_wait": 1.0}


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def server(store: Store):
    with LearnerServer(TOKEN, SCHEMA, store.add, max_batch_bytes=64 << 10) as s:
        yield s


@pytest.fixture
def stub(server: LearnerServer):
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.LearnerStub(channel)


def handshake(stub, actor_id: str = "a", schema: str = SCHEMA, metadata=MD) -> pb.HandshakeReply:
    request = pb.HandshakeRequest(
        protocol_version=PROTOCOL_VERSION, schema_hash=schema, actor_id=actor_id
    )
    return stub.Handshake(request, timeout=5, metadata=metadata)


def batch(session: str, seq: int, ids: list[int], actor_id: str = "a") -> pb.TransitionBatch:
    data = {k: np.stack([transition(i)[k] for i in ids]) for k in ("actions", "id")}
    return pb.TransitionBatch(
        actor_id=actor_id,
        session_id=session,
        seq=seq,
        param_versions=[0] * len(ids),
        arrays=codec.encode(data),
    )


def refused(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        result = call(*args, timeout=5, **kwargs)
        if hasattr(result, "__next__"):  # a server stream: the status comes with the first read
            list(result)
    return info.value


def free_address() -> str:
    """An address nothing listens on (the OS picks the port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_refusals_are_clear_counted_and_the_server_stays_up(server, stub, store) -> None:
    code = grpc.StatusCode
    session = handshake(stub).session_id
    cases = [  # (call, request, metadata, status, words in the message)
        (
            stub.Handshake,
            pb.HandshakeRequest(),
            (("x-serl-token", "wrong"),),
            code.UNAUTHENTICATED,
            "auth token",
        ),
        (stub.PushTransitions, batch(session, 1, [0]), (), code.UNAUTHENTICATED, "auth token"),
        (
            stub.GetParams,
            pb.ParamsRequest(),
            (("x-serl-token", ""),),
            code.UNAUTHENTICATED,
            "token",
        ),
        (
            stub.SendReport,
            pb.Report(),
            (("x-serl-token", TOKEN + "x"),),
            code.UNAUTHENTICATED,
            "token",
        ),
    ]
    for call, request, metadata, status, words in cases:
        error = refused(call, request, metadata=metadata)
        assert error.code() == status and words in error.details()

    error = refused(
        stub.Handshake,
        pb.HandshakeRequest(protocol_version=PROTOCOL_VERSION, schema_hash="0" * 64, actor_id="a"),
        metadata=MD,
    )
    assert error.code() == code.FAILED_PRECONDITION and "schema hash" in error.details()
    error = refused(
        stub.Handshake,
        pb.HandshakeRequest(protocol_version=99, schema_hash=SCHEMA, actor_id="a"),
        metadata=MD,
    )
    assert error.code() == code.FAILED_PRECONDITION and "protocol version 99" in error.details()

    # Malformed: bytes that are no protobuf at all, and well-formed messages with bad arrays.
    with grpc.insecure_channel(server.address) as channel:
        raw_push = channel.unary_unary("/serl.transport.v1.Learner/PushTransitions")
        error = refused(raw_push, b"\xff\xff\xff\xff garbage", metadata=MD)
    assert error.code() == code.INVALID_ARGUMENT and "not a TransitionBatch" in error.details()
    bad_dtype = batch(session, 1, [0, 1])
    bad_dtype.arrays[0].dtype = "object"
    bad_length = batch(session, 1, [0, 1])
    bad_length.arrays[0].data = bad_length.arrays[0].data[:-1]
    bad_rows = batch(session, 1, [0, 1])
    del bad_rows.param_versions[-1]
    for request, words in [
        (bad_dtype, "dtype 'object' is not one of"),
        (bad_length, "needs 16"),
        (bad_rows, "leading axis (2,), expected (1,)"),
        (pb.TransitionBatch(actor_id="a", session_id=session, seq=1), "empty batch"),
        (batch(session, 0, [0]), "seq: must be >= 1"),
        (batch(session, 1, [0], actor_id="bad id"), "actor_id"),
    ]:
        error = refused(stub.PushTransitions, request, metadata=MD)
        assert error.code() == code.INVALID_ARGUMENT and words in error.details(), error.details()

    # Oversized: over the learner's max_batch_bytes (counted), and past gRPC's own hard limit.
    big = pb.TransitionBatch(actor_id="a", session_id=session, seq=1, param_versions=[0])
    big.arrays.extend(codec.encode({"x": np.zeros((1, 70_000), np.uint8)}))
    error = refused(stub.PushTransitions, big, metadata=MD)
    assert error.code() == code.RESOURCE_EXHAUSTED and "65536" in error.details()
    huge = pb.TransitionBatch(actor_id="a", session_id=session, seq=1, param_versions=[0])
    huge.arrays.extend(codec.encode({"x": np.zeros((1, 3 << 20), np.uint8)}))
    assert refused(stub.PushTransitions, huge, metadata=MD).code() == code.RESOURCE_EXHAUSTED

    # A push without a handshake (or with a replaced session) must handshake again.
    error = refused(stub.PushTransitions, batch("nope", 1, [0]), metadata=MD)
    assert error.code() == code.FAILED_PRECONDITION and "handshake again" in error.details()

    stats = server.stats()
    assert stats["refused/unauthenticated"] == 4
    assert stats["refused/wrong_schema"] == 1
    assert stats["refused/wrong_protocol"] == 1
    assert stats["refused/malformed"] == 7
    assert stats["refused/oversized"] == 1
    assert stats["refused/stale_session"] == 1
    assert store.batches == []

    # ... and the server still serves a well-behaved actor.
    with ActorClient(server.address, TOKEN, "good", SCHEMA, **FAST) as client:
        for i in range(50):
            assert client.send(transition(i))
        assert client.flush(timeout=10)
    check_exactly_once(store.ids("good"), range(50))


def test_duplicates_are_acked_not_redelivered_and_gaps_counted(server, stub, store) -> None:
    session = handshake(stub).session_id
    assert stub.PushTransitions(batch(session, 1, [0, 1]), timeout=5, metadata=MD).acked_seq == 1
    assert stub.PushTransitions(batch(session, 1, [0, 1]), timeout=5, metadata=MD).acked_seq == 1
    assert stub.PushTransitions(batch(session, 3, [4]), timeout=5, metadata=MD).acked_seq == 3
    assert stub.PushTransitions(batch(session, 2, [2, 3]), timeout=5, metadata=MD).acked_seq == 3
    assert store.ids() == [0, 1, 4]
    stats = server.stats()
    assert (stats["batches/duplicate"], stats["batches/gap"], stats["batches/missing"]) == (2, 1, 1)
    reply = handshake(stub)  # a new session replaces the old one
    assert reply.acked_seq == 3 and reply.server_id == server.server_id
    error = refused(stub.PushTransitions, batch(session, 4, [5]), metadata=MD)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert server.watermarks() == {"a": 3}


def test_restored_watermarks_are_answered_and_respected(store) -> None:
    with (
        LearnerServer(TOKEN, SCHEMA, store.add, watermarks={"a": 7}) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.LearnerStub(channel)
        reply = handshake(stub)
        assert reply.acked_seq == 7
        stub.PushTransitions(batch(reply.session_id, 7, [70]), timeout=5, metadata=MD)
        stub.PushTransitions(batch(reply.session_id, 8, [80]), timeout=5, metadata=MD)
        assert store.ids() == [80]
        assert server.watermarks() == {"a": 8}


def test_acknowledged_only_after_on_transitions_returns() -> None:
    store, failures = Store(), []

    def flaky(batch) -> None:  # e.g. the episode store's disk is briefly unavailable
        if len(failures) < 3:
            failures.append(batch.seq)
            raise OSError("disk busy")
        store.add(batch)

    with (
        LearnerServer(TOKEN, SCHEMA, flaky) as server,
        ActorClient(server.address, TOKEN, "a", SCHEMA, batch_size=10, **FAST) as client,
    ):
        for i in range(100):
            client.send(transition(i))
        assert client.flush(timeout=20)
        assert server.stats()["errors/on_transitions"] == 3
    check_exactly_once(store.ids(), range(100))
    assert store.seqs("a") == list(range(1, len(store.seqs("a")) + 1))


def test_a_batch_the_learner_rejects_is_dropped_and_counted() -> None:
    store = Store()

    def picky(batch) -> None:
        if 5 in batch.data["id"]:
            raise ValueError("id 5 is not allowed")
        store.add(batch)

    with (
        LearnerServer(TOKEN, SCHEMA, picky) as server,
        ActorClient(server.address, TOKEN, "a", SCHEMA, batch_size=1, **FAST) as client,
    ):
        for i in range(10):
            client.send(transition(i))
        assert client.flush(timeout=10)
        assert client.stats()["refused"] == 1
        assert server.stats()["refused/rejected"] == 1
    check_exactly_once(store.ids(), [i for i in range(10) if i != 5])


def test_params_late_joiner_chunked_static_sent_once(store) -> None:
    rng = np.random.default_rng(0)
    encoder = {"conv": rng.standard_normal((3, 3, 3, 8)).astype(np.float32)}
    with LearnerServer(TOKEN, SCHEMA, store.add, param_chunk_bytes=1000) as server:
        with pytest.raises(ValueError, match="version: must increase and be >= 1"):
            server.publish({"w": np.zeros(1)}, 0)
        server.publish({"mlp": {"w": np.zeros((20, 20), np.float32)}}, 1, static={"enc": encoder})
        with ActorClient(server.address, TOKEN, "a", SCHEMA, **FAST) as first:
            version, params = first.wait_params(timeout=5)
            assert version == 1
            np.testing.assert_array_equal(params["enc"]["conv"], encoder["conv"])
            for v in (2, 3):
                latest = {"mlp": {"w": np.full((20, 20), v, np.float32)}}
                server.publish(latest, v)
                version, params = first.wait_params(after=v - 1, timeout=5)
            assert version == 3
            np.testing.assert_array_equal(params["mlp"]["w"], latest["mlp"]["w"])
            np.testing.assert_array_equal(params["enc"]["conv"], encoder["conv"])
            assert server.stats()["params/static_sent"] == 1  # not re-broadcast
            start = time.monotonic()
            # a long poll of 30 s: the current version must come at once, not when it ends
            slow_poll = {**FAST, "params_wait": 30.0}
            with ActorClient(server.address, TOKEN, "b", SCHEMA, **slow_poll) as late:
                version, params = late.wait_params(timeout=20)
                assert time.monotonic() - start < 10.0
                assert version == 3 and set(params) == {"enc", "mlp"}
            assert server.stats()["params/static_sent"] == 2
        with pytest.raises(ValueError, match="version: must increase"):
            server.publish(latest, 3)
        with pytest.raises(ValueError, match="also in the static tree"):
            server.publish({"enc": encoder}, 4)


def test_reports_arrive_and_transitions_are_tagged_with_versions(server, store) -> None:
    server.publish({"w": np.zeros(2, np.float32)}, 5)
    with ActorClient(server.address, TOKEN, "a", SCHEMA, **FAST) as client:
        assert client.wait_params(timeout=5)[0] == 5
        client.send(transition(0))
        client.send(transition(1), param_version=4)
        client.report({"eval/success_rate": 0.5, "eval/return": -3.0}, env_step=1000, kind="eval")
        assert client.flush(timeout=10)
    reports = server.drain_reports()
    assert [(r.actor_id, r.kind, r.env_step, r.values) for r in reports] == [
        ("a", "eval", 1000, {"eval/success_rate": 0.5, "eval/return": -3.0})
    ]
    assert server.drain_reports() == []
    versions = np.concatenate([b.param_versions for b in store.batches])
    assert versions.tolist() == [5, 4]


@pytest.mark.parametrize(
    ("token", "schema", "words"),
    [("wrong", SCHEMA, "UNAUTHENTICATED"), (TOKEN, "other", "schema hash")],
)
def test_misconfigured_actor_fails_loudly(server, token: str, schema: str, words: str) -> None:
    with ActorClient(server.address, token, "a", schema, **FAST) as client:
        deadline = time.monotonic() + 10
        with pytest.raises(TransportError, match=words):
            while time.monotonic() < deadline:  # send raises once the handshake was refused
                client.send(transition(0))
                time.sleep(0.02)
        assert client.flush(timeout=1) is False
        with pytest.raises(TransportError, match=words):  # a paced actor waits here: no hang
            client.wait_params(timeout=10)
    assert server.stats()["handshakes"] == 0


def test_send_validates_and_drops_past_the_bound() -> None:
    one = sum(a.nbytes for a in codec.flatten(transition(0)).values())
    with ActorClient(
        free_address(), TOKEN, "a", SCHEMA, max_queue_bytes=10 * one, **FAST
    ) as client:
        sent = [client.send(transition(i)) for i in range(25)]
        assert sent == [True] * 10 + [False] * 15
        assert client.stats()["dropped"] == 15 and client.stats()["queued"] == 10
        bad = transition(0)
        bad["actions"] = np.zeros(3, np.float32)
        with pytest.raises(ValueError, match="actions: \\(dtype, shape\\)"):
            client.send(bad)
        with pytest.raises(ValueError, match="more than max_batch_bytes"):
            client.send({**transition(0), "big": np.zeros(5 << 20, np.uint8)})
        client.close(timeout=0)
        assert client.stats()["lost_at_close"] == 10
    with pytest.raises(RuntimeError, match="closed"):
        client.send(transition(0))


def test_a_second_learner_on_the_same_port_fails_loudly(server) -> None:
    with pytest.raises(OSError, match="cannot listen"):
        LearnerServer(TOKEN, SCHEMA, print, port=server.port)
    with pytest.raises(ValueError, match="empty token"):
        LearnerServer("", SCHEMA, print)
