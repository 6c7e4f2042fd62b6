"""Learner side of the transport: a gRPC server that takes transitions and serves parameters.

One piece (over ~450 lines) because its parts guard one invariant together: the session
table, the exactly-once watermarks, the admission limits and the parameter long-poll share one
lock, and split across modules each would need the others' internals.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
import numpy as np
from google.protobuf.message import DecodeError, Message

from serl.distributed import codec
from serl.distributed.proto import transport_pb2 as pb

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
SERVICE = "serl.transport.v1.Learner"
TOKEN_KEY = "x-serl-token"
MAX_WAIT_S = 30.0
_COUNTERS = (
    *(f"refused/{k}" for k in ("unauthenticated", "wrong_protocol", "wrong_schema")),
    *(f"refused/{k}" for k in ("malformed", "oversized", "stale_session", "rejected")),
    *("batches/received", "batches/duplicate", "batches/gap", "transitions/received"),
    "handshakes",
)
_HEADROOM = 1 << 20  # protobuf framing on top of the array bytes (paths, shapes, versions)

KEEPALIVE_OPTIONS = [
    # Ping an idle peer every 10 s and drop it after 5 s without an answer, so a dead actor or
    # learner is noticed in ~15 s instead of the OS's TCP timeout (hours).
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


def check_id(value: str, field: str) -> str:
    """Actor ids and report kinds: 1-128 printable ASCII characters without spaces."""
    if not 0 < len(value) <= 128 or not value.isascii() or not value.isprintable() or " " in value:
        raise ValueError(f"{field}: expected 1-128 printable ASCII characters, got {value!r}")
    return value


@dataclass(frozen=True)
class Transitions:
    """One batch as handed to `on_transitions`: every leaf of `data` has `len(self)` rows."""

    actor_id: str
    seq: int
    data: codec.Tree
    param_versions: np.ndarray  # int64[n]: the parameter version that produced each transition

    def __len__(self) -> int:
        return len(self.param_versions)


@dataclass(frozen=True)
class Report:
    """A statistics or evaluation report from an actor."""

    actor_id: str
    kind: str
    env_step: int
    values: dict[str, float]


@dataclass(frozen=True)
class _Params:
    """The published parameters, serialised once and streamed to every actor as is."""

    version: int
    static_id: int
    static_paths: frozenset[str]
    static: tuple[bytes, ...]
    dynamic: tuple[bytes, ...]


class LearnerServer:
    """gRPC server of the learner: authenticates, deduplicates, acknowledges, broadcasts.

    `on_transitions(batch)` is called for each new batch, one call at a time, from gRPC threads;
    the batch is acknowledged to the actor only when it returns, so it should return once the
    data is durable (written to the episode store). If it raises ValueError the batch is refused
    (INVALID_ARGUMENT, the actor drops it); any other exception is an INTERNAL error and the actor
    retries later. `watermarks` restores per-actor acknowledged sequence numbers after a restart,
    `delivered` the per-actor transition counts (a restarted actor goes on from its count).
    Each connected actor keeps one of the `max_workers` threads in its parameter long poll: size
    it above twice the number of actors. `port=0` lets the OS pick a free port (see `.port`).
    """

    def __init__(
        self,
        token: str,
        schema_hash: str,
        on_transitions: Callable[[Transitions], None],
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        watermarks: Mapping[str, int] | None = None,
        delivered: Mapping[str, int] | None = None,
        max_batch_bytes: int = 16 << 20,
        max_batch_transitions: int = 4096,
        param_chunk_bytes: int = 1 << 20,
        max_reports: int = 10_000,
        max_workers: int = 32,
        credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        if not token:
            raise ValueError("token: an empty token would let anyone in; generate a secret")
        self._token = token.encode()
        self._schema_hash = schema_hash
        self._on_transitions = on_transitions
        self._max_batch_bytes = max_batch_bytes
        self._max_batch_transitions = max_batch_transitions
        self._chunk_bytes = param_chunk_bytes
        self.server_id = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # params published or server closing
        self._deliver = threading.Lock()  # one delivery (or handshake) at a time
        marks = (watermarks or {}).items()
        self._watermarks = {check_id(a, "watermarks"): int(s) for a, s in marks}
        self._delivered = Counter(
            {check_id(a, "delivered"): int(n) for a, n in (delivered or {}).items()}
        )
        self._sessions: dict[str, str] = {}
        self._params: _Params | None = None
        self._reports: deque[Report] = deque(maxlen=max_reports)
        self._counts: Counter[str] = Counter()
        self._closed = False

        handlers = {
            "Handshake": grpc.unary_unary_rpc_method_handler(self._handshake),
            "PushTransitions": grpc.unary_unary_rpc_method_handler(self._push),
            "GetParams": grpc.unary_stream_rpc_method_handler(self._get_params),
            "SendReport": grpc.unary_unary_rpc_method_handler(self._send_report),
        }  # no (de)serialisers: handlers parse raw bytes, so garbage is refused and counted
        self._executor = futures.ThreadPoolExecutor(max_workers, thread_name_prefix="learner-rpc")
        self._server = grpc.server(
            self._executor,
            handlers=[grpc.method_handlers_generic_handler(SERVICE, handlers)],
            options=[
                *KEEPALIVE_OPTIONS,
                ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
                ("grpc.http2.max_ping_strikes", 0),
                ("grpc.max_receive_message_length", max_batch_bytes + _HEADROOM),
                ("grpc.max_send_message_length", param_chunk_bytes + _HEADROOM),
                ("grpc.so_reuseport", 0),  # a second learner on the same port fails loudly
            ],
        )
        address = f"{host}:{port}"
        try:
            if credentials is None:
                bound = self._server.add_insecure_port(address)
            else:
                bound = self._server.add_secure_port(address, credentials)
        except RuntimeError as e:
            bound, cause = 0, e
        else:
            cause = None
        if not bound:
            raise OSError(f"LearnerServer: cannot listen on {address} (port in use?)") from cause
        self.port = bound
        self.address = f"{host}:{bound}"
        self._server.start()
        log.info("learner transport listening on %s", self.address)

    # -- the caller's side ------------------------------------------------------------------

    def publish(
        self, params: Mapping[str, Any], version: int, *, static: Mapping[str, Any] | None = None
    ) -> None:
        """Make `params` (a tree) the current parameters; `static` replaces the send-once tree."""
        current = self._params
        previous = current.version if current else 0
        if version <= previous:
            raise ValueError(f"version: must increase and be >= 1, got {version} after {previous}")
        static_id = current.static_id if current else 0
        static_paths = current.static_paths if current else frozenset()
        static_msgs = current.static if current else ()
        if static is not None:
            static_id += 1
            static_paths = frozenset(codec.flatten(static))
            static_msgs = self._serialise(static, version, static_id, is_static=True)
        clash = static_paths & set(codec.flatten(params))
        if clash:
            raise ValueError(f"params: leaves also in the static tree: {sorted(clash)[:5]}")
        dynamic = self._serialise(params, version, static_id, is_static=False)
        with self._changed:
            if self._params is not current:
                raise RuntimeError("publish: called from two threads at once")
            self._params = _Params(version, static_id, static_paths, static_msgs, dynamic)
            self._counts["params/published"] += 1
            self._changed.notify_all()

    def watermarks(self) -> dict[str, int]:
        """Per-actor last acknowledged sequence numbers, for checkpoints."""
        with self._lock:
            return dict(self._watermarks)

    def drain_reports(self) -> list[Report]:
        """The reports received since the last call, oldest first."""
        with self._lock:
            reports = list(self._reports)
            self._reports.clear()
        return reports

    def stats(self) -> dict[str, int]:
        """Counters: received, duplicates, gaps and refusals by kind ("refused/oversized")."""
        with self._lock:
            counts = {k: 0 for k in _COUNTERS}
            counts.update(self._counts)
            counts["actors"] = len(self._sessions)
            counts["params/version"] = self._params.version if self._params else 0
        return counts

    @property
    def param_version(self) -> int:
        """The current parameter version (0 before the first publish)."""
        params = self._params
        return params.version if params else 0

    def close(self, grace: float = 1.0) -> None:
        """Stop serving; in-flight calls get `grace` seconds. Idempotent."""
        with self._changed:
            if self._closed:
                return
            self._closed = True
            self._changed.notify_all()
        self._server.stop(grace).wait()
        with self._deliver:  # a delivery still running in a handler thread finishes first
            pass
        self._executor.shutdown(wait=False)
        log.info("learner transport on %s closed", self.address)

    def __enter__(self) -> LearnerServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- RPC handlers -----------------------------------------------------------------------

    def _serialise(
        self, tree: Mapping[str, Any], version: int, static_id: int, *, is_static: bool
    ) -> tuple[bytes, ...]:
        pieces = list(codec.chunk(tree, self._chunk_bytes))
        return tuple(
            pb.ParamsChunk(
                server_id=self.server_id,
                version=version,
                static_id=static_id,
                is_static=is_static,
                pieces=p,
                last=i == len(pieces) - 1,
            ).SerializeToString()
            for i, p in enumerate(pieces)
        )

    def _refuse(
        self, context: grpc.ServicerContext, code: grpc.StatusCode, kind: str, msg: str
    ) -> NoReturn:
        with self._lock:
            self._counts[f"refused/{kind}"] += 1
        level = logging.DEBUG if kind == "stale_session" else logging.WARNING  # stale: routine
        log.log(level, "refused (%s): %s", kind, msg)
        context.abort(code, msg)
        raise AssertionError("unreachable: context.abort raises")

    def _authorize(self, context: grpc.ServicerContext) -> None:
        tokens = [v for k, v in context.invocation_metadata() if k == TOKEN_KEY]
        given = tokens[0].encode() if len(tokens) == 1 and isinstance(tokens[0], str) else b""
        if not hmac.compare_digest(given, self._token):
            self._refuse(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                "unauthenticated",
                f"missing or wrong auth token (metadata {TOKEN_KEY!r})",
            )

    def _parse(self, kind: type[Message], raw: bytes, context: grpc.ServicerContext) -> Any:
        try:
            return kind.FromString(raw)
        except DecodeError as e:
            message = f"not a {kind.__name__}: {e}"
            self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "malformed", message)

    def _handshake(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        self._authorize(context)
        request = self._parse(pb.HandshakeRequest, raw, context)
        if request.protocol_version != PROTOCOL_VERSION:
            self._refuse(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                "wrong_protocol",
                f"protocol version {request.protocol_version}; the learner's is {PROTOCOL_VERSION}",
            )
        try:
            actor_id = check_id(request.actor_id, "actor_id")
        except ValueError as e:
            self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "malformed", str(e))
        if request.schema_hash != self._schema_hash:
            self._refuse(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                "wrong_schema",
                f"schema hash {request.schema_hash[:16]!r}... differs from the learner's "
                f"{self._schema_hash[:16]!r}...: observation/action spaces do not match",
            )
        # Under the delivery lock: a push of this actor's previous process is either complete
        # (and in the watermark we answer) or will find its session replaced.
        with self._deliver, self._lock:
            session = uuid.uuid4().hex
            self._sessions[actor_id] = session
            acked = self._watermarks.get(actor_id, 0)
            delivered = self._delivered[actor_id]
            self._counts["handshakes"] += 1
            version = self._params.version if self._params else 0
        log.info("actor %s connected (acked seq %d)", actor_id, acked)
        return pb.HandshakeReply(
            session_id=session,
            server_id=self.server_id,
            acked_seq=acked,
            param_version=version,
            max_batch_bytes=self._max_batch_bytes,
            max_batch_transitions=self._max_batch_transitions,
            delivered=delivered,
        ).SerializeToString()

    def _decode_batch(self, request: pb.TransitionBatch) -> Transitions:
        actor_id = check_id(request.actor_id, "actor_id")
        n = len(request.param_versions)
        if request.seq < 1:
            raise ValueError(f"seq: must be >= 1, got {request.seq}")
        if n > self._max_batch_transitions:
            raise codec.OversizeError(f"{n} transitions, at most {self._max_batch_transitions}")
        if n == 0 or not request.arrays:
            raise ValueError("empty batch: no param_versions or no arrays")
        data = codec.decode(request.arrays, codec.Limits(max_bytes=self._max_batch_bytes))
        for path, leaf in codec.flatten(data).items():
            if leaf.ndim == 0 or leaf.shape[0] != n:
                raise ValueError(f"{path}: leading axis {leaf.shape[:1]}, expected ({n},)")
        versions = np.array(request.param_versions, dtype=np.int64)
        return Transitions(actor_id, int(request.seq), data, versions)

    def _push(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        self._authorize(context)
        if len(raw) > self._max_batch_bytes + _HEADROOM // 2:
            self._refuse(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "oversized",
                f"request of {len(raw)} bytes; max_batch_bytes is {self._max_batch_bytes}",
            )
        request = self._parse(pb.TransitionBatch, raw, context)
        try:
            batch = self._decode_batch(request)
        except codec.OversizeError as e:
            self._refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED, "oversized", str(e))
        except ValueError as e:
            self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "malformed", str(e))
        with self._deliver:
            if self._closed:  # watermarks() after close() must be final
                context.abort(grpc.StatusCode.UNAVAILABLE, "the learner is shutting down")
            with self._lock:
                session_ok = self._sessions.get(batch.actor_id) == request.session_id
                acked = self._watermarks.get(batch.actor_id, 0)
            if not session_ok:
                self._refuse(
                    context,
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "stale_session",
                    f"actor {batch.actor_id}: unknown or replaced session; handshake again",
                )
            if batch.seq <= acked:  # a retry of something already delivered
                with self._lock:
                    self._counts["batches/duplicate"] += 1
                return pb.Ack(acked_seq=acked).SerializeToString()
            if batch.seq > acked + 1:  # the actor lost data, or the learner restored old marks
                log.warning("actor %s: seq %d after %d", batch.actor_id, batch.seq, acked)
                with self._lock:
                    self._counts["batches/gap"] += 1
                    self._counts["batches/missing"] += batch.seq - acked - 1
            try:
                self._on_transitions(batch)
            except ValueError as e:
                self._refuse(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "rejected",
                    f"on_transitions rejected the batch: {e}",
                )
            except Exception as e:
                log.exception("on_transitions failed: actor %s seq %d", batch.actor_id, batch.seq)
                with self._lock:
                    self._counts["errors/on_transitions"] += 1
                context.abort(grpc.StatusCode.INTERNAL, f"on_transitions failed: {e!r}")
            with self._lock:
                self._watermarks[batch.actor_id] = batch.seq
                self._delivered[batch.actor_id] += len(batch)
                self._counts["batches/received"] += 1
                self._counts["transitions/received"] += len(batch)
        return pb.Ack(acked_seq=batch.seq).SerializeToString()

    def _newer(self, request: pb.ParamsRequest) -> _Params | None:
        params = self._params
        if params is None:
            return None
        if (request.server_id, request.version, request.static_id) == (
            self.server_id,
            params.version,
            params.static_id,
        ):
            return None
        return params

    def _wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _get_params(self, raw: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        self._authorize(context)
        request = self._parse(pb.ParamsRequest, raw, context)
        wait = min(max(float(request.wait_s), 0.0), MAX_WAIT_S)
        until = time.monotonic() + wait
        context.add_callback(self._wake)  # a cancelled or expired call ends its wait at once
        with self._changed:
            while (
                (params := self._newer(request)) is None
                and not self._closed
                and context.is_active()
                and (left := until - time.monotonic()) > 0
            ):
                self._changed.wait(left)
        if params is None:
            return  # nothing new within wait_s: an empty stream
        same_static = request.server_id == self.server_id and request.static_id == params.static_id
        if not same_static and params.static:
            yield from params.static
            with self._lock:
                self._counts["params/static_sent"] += 1
        yield from params.dynamic
        with self._lock:
            self._counts["params/sent"] += 1

    def _send_report(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        self._authorize(context)
        request = self._parse(pb.Report, raw, context)
        try:
            report = Report(
                check_id(request.actor_id, "actor_id"),
                check_id(request.kind, "kind"),
                int(request.env_step),
                {check_id(k, "values"): float(v) for k, v in request.values.items()},
            )
            if len(report.values) > 1024:
                raise ValueError(f"values: {len(report.values)} entries, at most 1024")
        except ValueError as e:
            self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "malformed", str(e))
        with self._lock:
            if len(self._reports) == self._reports.maxlen:
                self._counts["reports/dropped"] += 1
            self._reports.append(report)
            self._counts["reports/received"] += 1
        return pb.Empty().SerializeToString()
