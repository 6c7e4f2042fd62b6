"""Actor side of the transport: a client that never blocks the env loop nor loses acked data.

One piece (over ~450 lines) because the send queue, the disk spill, the sender thread's
retries and the parameter poller share one lock and one sequence numbering: the exactly-once
guarantee is the sum of them and reads best in one place.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from serl.distributed import codec
from serl.distributed.proto import transport_pb2 as pb
from serl.distributed.proto import transport_pb2_grpc as pb_grpc
from serl.distributed.server import KEEPALIVE_OPTIONS, PROTOCOL_VERSION, TOKEN_KEY, check_id

log = logging.getLogger(__name__)

# Errors that retrying cannot fix: the actor is misconfigured (token, schema, protocol).
_FATAL = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
# The learner refused this batch for good (malformed, oversized, rejected): drop it, go on.
_REFUSED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION  # at handshake: wrong schema or protocol
_COUNTERS = ("enqueued", "sent", "dropped", "refused", "spilled", "handshakes", "rpc_errors")
_SPILL_RE = re.compile(r"^(chunk|sealed)-(\d{12})\.npz$")
_PARAM_LIMITS = codec.Limits(max_bytes=4 << 30, max_leaves=1 << 16, max_depth=16)
# How long `send` waits for the spiller to free memory before it drops: far above one chunk's
# write (ms), below a robot server's watchdog (0.5 s), so a stalled disk costs a step, not the arm.
_SPILL_WAIT_S = 0.25


class TransportError(RuntimeError):
    """The client cannot go on (wrong token, schema or protocol); raised by `send`."""


@dataclass(eq=False)
class _Batch:
    """Transitions on their way: items in memory, a stacked copy, and/or a spill file."""

    n: int
    nbytes: int
    items: list[tuple[dict[str, np.ndarray], int]] | None = None
    stacked: tuple[dict[str, np.ndarray], np.ndarray] | None = None
    path: Path | None = None
    seq: int = 0  # 0 until sealed (numbered) for sending
    taken: bool = False  # popped by the sender while the spiller was writing it
    in_memory: bool = True  # counted in the memory bound

    def load(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Stacked {path: array[n, ...]} and the parameter versions int64[n]."""
        if self.stacked is None:
            if self.items is not None:
                flats = [flat for flat, _ in self.items]
                data = {k: np.stack([f[k] for f in flats]) for k in flats[0]}
                versions = np.array([v for _, v in self.items], dtype=np.int64)
            else:
                assert self.path is not None
                with np.load(self.path, allow_pickle=False) as z:
                    data = {k[2:]: z[k] for k in z.files if k.startswith("t/")}
                    versions = z["v"].astype(np.int64)
            self.stacked = (data, versions)
        return self.stacked


def _write_npz(path: Path, data: Mapping[str, np.ndarray], versions: np.ndarray) -> None:
    """Atomically write a batch (keys prefixed so none can clash with np.savez's arguments)."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, v=versions, **{f"t/{k}": a for k, a in data.items()})
    os.replace(tmp, path)


class ActorClient:
    """Sends transitions to a `LearnerServer` and receives its parameters, in the background.

    `send` only enqueues (bounded by `max_queue_bytes`; past it transitions are dropped, counted
    and logged); a sender thread batches, numbers and pushes them, and a batch leaves the queue
    only when the learner acknowledges it. With `spill_dir`, the queue overflows to .npz files
    there instead of dropping (up to `max_spill_bytes`; a full memory queue waits up to 0.25 s for
    the disk write under way), and `close` leaves what is unsent there for the next client with
    the same actor id. A parameter thread long-polls the learner;
    `latest_params()` returns the newest (version, tree) without blocking.
    """

    def __init__(
        self,
        address: str,
        token: str,
        actor_id: str,
        schema_hash: str,
        *,
        batch_size: int = 256,
        max_delay: float = 0.05,
        max_batch_bytes: int = 4 << 20,
        max_queue_bytes: int = 1 << 30,
        spill_dir: str | os.PathLike[str] | None = None,
        max_spill_bytes: int = 16 << 30,
        rpc_timeout: float = 10.0,
        params_wait: float = 5.0,
        params_timeout: float = 60.0,
        backoff: tuple[float, float] = (0.05, 2.0),
        watch_params: bool = True,
        max_reports: int = 1000,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.actor_id = check_id(actor_id, "actor_id")
        if batch_size < 1 or max_batch_bytes < 1 or max_queue_bytes < 1:
            raise ValueError("batch_size, max_batch_bytes and max_queue_bytes must be >= 1")
        self._schema_hash = schema_hash
        self._batch_size = batch_size
        self._max_delay = max_delay
        self._max_batch_bytes = max_batch_bytes
        self._max_queue_bytes = max_queue_bytes
        self._max_spill_bytes = max_spill_bytes
        self._rpc_timeout = rpc_timeout
        self._params_wait = params_wait
        self._params_timeout = params_timeout
        self._backoff = backoff
        self._metadata = ((TOKEN_KEY, token),)
        self._rng = random.Random()

        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._pending: deque[tuple[dict[str, np.ndarray], int, int, float]] = deque()
        self._chunks: deque[_Batch] = deque()  # older than everything in _pending
        self._inflight: _Batch | None = None
        self._mem_bytes = 0  # bytes of queued transitions held in memory
        self._pending_bytes = 0  # of which not yet in a batch
        self._spill_bytes = 0
        self._signature: Signature | None = None
        self._reports: deque[pb.Report] = deque(maxlen=max_reports)
        self._counts: Counter[str] = Counter()
        self._session: str | None = None
        self._connected = False  # the last call to the learner succeeded
        self._held: int | None = None  # this actor's transitions the learner held at first contact
        self._last_answer = time.monotonic()  # when a call to the learner last succeeded
        self._acked = 0
        self._next_seq = 1
        self._params: tuple[int, codec.Tree] | None = None
        self._fatal: TransportError | None = None
        self._last_drop_log = -np.inf

        self._spill_dir = Path(spill_dir) if spill_dir is not None else None
        self._lock_file = None
        if self._spill_dir is not None:
            self._open_spill_dir()

        options = [
            *KEEPALIVE_OPTIONS,
            ("grpc.max_send_message_length", max_batch_bytes + (1 << 20)),
            ("grpc.max_receive_message_length", 64 << 20),
            # Retry the connection at least every second, so a learner that comes back is
            # found at once (gRPC's default backoff grows to two minutes).
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        if credentials is None:
            self._channel = grpc.insecure_channel(address, options=options)
        else:
            self._channel = grpc.secure_channel(address, credentials, options=options)
        self._stub = pb_grpc.LearnerStub(self._channel)
        self._threads = [threading.Thread(target=self._guard(self._send_loop), name="actor-send")]
        if watch_params:
            self._threads.append(
                threading.Thread(target=self._guard(self._params_loop), name="actor-params")
            )
        if self._spill_dir is not None:
            self._threads.append(
                threading.Thread(target=self._guard(self._spill_loop), name="actor-spill")
            )
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    # -- the env loop's side ------------------------------------------------------------------

    def send(self, transition: Mapping[str, Any], param_version: int | None = None) -> bool:
        """Enqueue one transition (a tree without batch axis); False if dropped (queue full).

        `param_version` tags it with the parameters that produced it (default: the latest
        received, 0 if none). Raises TransportError once the client has failed for good.
        """
        self._check_usable()
        flat = {k: np.array(v) for k, v in codec.flatten(transition).items()}  # copies
        signature = {k: (v.dtype, v.shape) for k, v in flat.items()}
        nbytes = sum(v.nbytes for v in flat.values())
        if nbytes > self._max_batch_bytes:
            raise ValueError(f"transition: {nbytes} bytes, more than max_batch_bytes")
        if param_version is None:
            params = self._params
            param_version = params[0] if params else 0
        with self._cond:
            if self._signature is None:
                self._signature = signature
            elif signature != self._signature:
                raise ValueError(f"transition: {_difference(self._signature, signature)}")
            if self._mem_bytes + nbytes > self._max_queue_bytes and self._spill_dir is not None:
                self._cond.wait_for(lambda: not self._waiting_for_spill(nbytes), _SPILL_WAIT_S)
            if self._mem_bytes + nbytes > self._max_queue_bytes:
                self._counts["dropped"] += 1
                self._log_drop()
                return False
            self._pending.append((flat, int(param_version), nbytes, time.monotonic()))
            self._mem_bytes += nbytes
            self._pending_bytes += nbytes
            self._counts["enqueued"] += 1
            if len(self._pending) == 1 or self._full() or self._should_spill():
                self._cond.notify_all()
        return True

    def report(self, values: Mapping[str, float], env_step: int, kind: str = "train") -> None:
        """Queue a flat dict of floats for the learner (best effort, oldest dropped when full)."""
        self._check_usable()
        msg = pb.Report(
            actor_id=self.actor_id,
            kind=check_id(kind, "kind"),
            env_step=int(env_step),
            values={check_id(k, "values"): float(v) for k, v in values.items()},
        )
        with self._cond:
            if len(self._reports) == self._reports.maxlen:
                self._counts["reports_dropped"] += 1
            self._reports.append(msg)
            self._cond.notify_all()

    def latest_params(self) -> tuple[int, codec.Tree] | None:
        """The newest (version, params tree) received, static tree merged in; None before any."""
        return self._params

    def wait_params(
        self, after: int = 0, timeout: float | None = None
    ) -> tuple[int, codec.Tree] | None:
        """Block until parameters with a version other than `after` are held (or timeout).
        Raises TransportError once the client has failed for good."""
        with self._cond:
            self._cond.wait_for(
                lambda: (
                    (self._params is not None and self._params[0] != after)
                    or self._stop.is_set()
                    or self._fatal is not None
                ),
                timeout,
            )
            self._check_usable()
            return self._params

    def wait_connected(self, timeout: float | None = None) -> int | None:
        """Block until the first handshake; how many of this actor's transitions the learner then
        held (where a restarted actor goes on), or None on timeout or failure."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._held is not None or self._stop.is_set() or self._fatal is not None,
                timeout,
            )
            return self._held

    def silent_for(self) -> float:
        """Seconds since the learner last answered a call (a few when all is well: the
        parameter long poll returns every `params_wait` s)."""
        return time.monotonic() - self._last_answer

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything enqueued (and reported) is acknowledged; False on timeout."""
        with self._cond:
            return (
                self._cond.wait_for(
                    lambda: (
                        self._fatal is not None
                        or not (self._pending or self._chunks or self._inflight or self._reports)
                    ),
                    timeout,
                )
                and self._fatal is None
            )

    def stats(self) -> dict[str, float]:
        """Counters and queue depths (transitions and bytes), flat."""
        with self._cond:
            counts: dict[str, float] = {k: 0 for k in _COUNTERS}
            counts.update(self._counts)
            counts["queued"] = (
                len(self._pending)
                + sum(c.n for c in self._chunks)
                + (self._inflight.n if self._inflight else 0)
            )
            counts["queued_bytes"] = self._mem_bytes
            counts["spilled_bytes"] = self._spill_bytes
            counts["acked_seq"] = self._acked
            counts["connected"] = float(self._connected)
            counts["param_version"] = self._params[0] if self._params else 0
        return counts

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued for up to `timeout` s, stop, keep the rest in spill_dir."""
        if self._stop.is_set():
            return
        if timeout > 0 and self._fatal is None:
            self.flush(timeout)
        with self._cond:
            self._stop.set()
            self._cond.notify_all()
        self._channel.close()  # cancels in-flight calls so the threads end now
        for thread in self._threads:
            thread.join()
        self._keep_unsent()

    def __enter__(self) -> ActorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- background threads -------------------------------------------------------------------

    def _guard(self, loop: Callable[[], None]) -> Callable[[], None]:
        """Run a thread's loop; an unexpected error fails the client loudly, not silently."""

        def run() -> None:
            try:
                loop()
            except Exception as e:
                if not self._stop.is_set():
                    log.exception("actor %s: %s crashed", self.actor_id, loop.__name__)
                    self._fail(f"{loop.__name__} crashed: {e!r}")

        return run

    def _send_loop(self) -> None:
        delay = self._backoff[0]
        while not self._stop.is_set():
            try:
                if self._session is None:
                    self._handshake()
                if self._wait_for_work():
                    self._send_reports()
                    self._push()
                delay = self._backoff[0]
            except grpc.RpcError as e:
                self._connected = False
                if self._stop.is_set():
                    return
                code = e.code()
                handshaking = self._session is None
                if code in _FATAL or (handshaking and code in _REFUSED | {_PRECONDITION}):
                    self._fail(f"learner refused actor {self.actor_id}: {code.name}: {e.details()}")
                    return
                if code == _PRECONDITION:  # stale session: handshake again
                    self._counts["stale_sessions"] += 1
                    self._session = None
                else:
                    self._counts["rpc_errors"] += 1
                log.debug("actor %s: %s (retry in %.2fs)", self.actor_id, code.name, delay)
                self._stop.wait(delay * self._rng.uniform(0.5, 1.0))
                delay = min(2 * delay, self._backoff[1])

    def _handshake(self) -> None:
        reply = self._stub.Handshake(
            pb.HandshakeRequest(
                protocol_version=PROTOCOL_VERSION,
                schema_hash=self._schema_hash,
                actor_id=self.actor_id,
            ),
            timeout=self._rpc_timeout,
            metadata=self._metadata,
        )
        with self._cond:
            self._acked = max(self._acked, reply.acked_seq)
            self._next_seq = max(self._next_seq, reply.acked_seq + 1)
            self._max_batch_bytes = min(self._max_batch_bytes, reply.max_batch_bytes)
            self._batch_size = min(self._batch_size, reply.max_batch_transitions)
            if self._inflight is not None and self._inflight.seq <= reply.acked_seq:
                self._done(self._inflight)  # the learner had it; only the ack was lost
            self._session = reply.session_id
            self._connected = True
            self._last_answer = time.monotonic()
            if self._held is None:
                self._held = reply.delivered
            self._counts["handshakes"] += 1
            self._cond.notify_all()
        log.info("actor %s: connected, learner acked seq %d", self.actor_id, reply.acked_seq)

    def _wait_for_work(self) -> bool:
        """Wait for something to send and seal the next batch; False if stopping."""
        with self._cond:
            while not self._stop.is_set():
                if self._inflight is None:
                    self._inflight = self._seal()
                if self._inflight is not None or self._reports:
                    return True
                if self._pending:  # not enough for a batch yet: wait for more or for max_delay
                    timeout = self._pending[0][3] + self._max_delay - time.monotonic()
                    if timeout <= 0:
                        self._inflight = self._seal(force=True)
                        return True
                    self._cond.wait(timeout)
                else:
                    self._cond.wait()
            return False

    def _seal(self, force: bool = False) -> _Batch | None:
        """Next batch to send, numbered: spilled chunks first, then memory (caller holds lock)."""
        while self._chunks:
            batch = self._chunks.popleft()
            batch.taken = True
            if batch.seq and batch.seq <= self._acked:  # from a previous run, already delivered
                self._done(batch)
                continue
            if not batch.seq:
                batch.seq = self._next_seq
            self._next_seq = max(self._next_seq, batch.seq + 1)
            return batch
        if not self._pending or not (force or self._full()):
            return None
        items = self._take_pending()
        batch = _Batch(n=len(items), nbytes=sum(b for _, _, b, _ in items), seq=self._next_seq)
        batch.items = [(flat, version) for flat, version, _, _ in items]
        self._next_seq += 1
        return batch

    def _take_pending(self) -> list[tuple[dict[str, np.ndarray], int, int, float]]:
        """Pop the oldest transitions that fit one batch (caller holds the lock)."""
        items, size = [], 0
        while self._pending and len(items) < self._batch_size:
            nbytes = self._pending[0][2]
            if items and size + nbytes > self._max_batch_bytes:
                break
            items.append(self._pending.popleft())
            size += nbytes
        self._pending_bytes -= size
        return items

    def _full(self) -> bool:
        """Enough pending for a whole batch (caller holds the lock)."""
        return (
            len(self._pending) >= self._batch_size or self._pending_bytes >= self._max_batch_bytes
        )

    def _push(self) -> None:
        batch = self._inflight
        if batch is None:
            return
        if batch.path is not None and batch.path.name.startswith("chunk-"):
            sealed = batch.path.with_name(f"sealed-{batch.seq:012d}.npz")
            os.replace(batch.path, sealed)  # a crash from here on resends it under this seq
            batch.path = sealed
        data, versions = batch.load()
        request = pb.TransitionBatch(
            actor_id=self.actor_id,
            session_id=self._session or "",
            seq=batch.seq,
            param_versions=versions.tolist(),
            arrays=codec.encode_flat(data),
        )
        try:
            ack = self._stub.PushTransitions(
                request, timeout=self._rpc_timeout, metadata=self._metadata
            )
        except grpc.RpcError as e:
            if e.code() not in _REFUSED:
                raise
            log.error("actor %s: batch %d refused: %s", self.actor_id, batch.seq, e.details())
            with self._cond:
                self._counts["refused"] += batch.n
                self._done(batch)
            return
        with self._cond:
            self._last_answer = time.monotonic()
            self._acked = max(self._acked, ack.acked_seq)
            self._counts["sent"] += batch.n
            self._done(batch)

    def _done(self, batch: _Batch) -> None:
        """Forget an acknowledged (or refused) batch (caller holds the lock)."""
        if batch.in_memory:
            self._mem_bytes -= batch.nbytes
        if batch.path is not None:
            self._spill_bytes -= batch.nbytes
            batch.path.unlink(missing_ok=True)
        if self._inflight is batch:
            self._inflight = None
        self._cond.notify_all()

    def _send_reports(self) -> None:
        while True:
            with self._cond:
                if not self._reports:
                    return
                report = self._reports[0]
            try:
                self._stub.SendReport(report, timeout=self._rpc_timeout, metadata=self._metadata)
            except grpc.RpcError as e:
                if e.code() not in _REFUSED:
                    raise
                log.error("actor %s: learner refused a report: %s", self.actor_id, e.details())
            with self._cond:
                if self._reports and self._reports[0] is report:
                    self._reports.popleft()
                    self._counts["reports_sent"] += 1
                    self._cond.notify_all()

    def _params_loop(self) -> None:
        delay = self._backoff[0]
        held = ("", 0, 0)  # (server id, version, static id) of what we hold
        static: codec.Tree = {}
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                call = self._stub.GetParams(
                    pb.ParamsRequest(
                        server_id=held[0],
                        version=held[1],
                        static_id=held[2],
                        wait_s=self._params_wait,
                    ),
                    timeout=self._params_wait + self._params_timeout,
                    metadata=self._metadata,
                )
                received, assembler = False, codec.TreeAssembler(_PARAM_LIMITS)
                for msg in call:
                    received = True
                    for piece in msg.pieces:
                        assembler.add(piece)
                    if not msg.last:
                        continue
                    tree, assembler = assembler.finish(), codec.TreeAssembler(_PARAM_LIMITS)
                    if msg.is_static:
                        static, held = tree, (msg.server_id, held[1], msg.static_id)
                        continue
                    if msg.static_id != 0 and (msg.server_id, msg.static_id) != (held[0], held[2]):
                        raise codec.CodecError("parameters refer to a static tree not received")
                    merged = codec.merge(static, tree) if msg.static_id else tree
                    held = (msg.server_id, msg.version, msg.static_id)
                    with self._cond:
                        self._params = (msg.version, merged)
                        self._counts["params_received"] += 1
                        self._cond.notify_all()
                delay = self._backoff[0]
                self._last_answer = time.monotonic()
                if received or time.monotonic() - started > self._params_wait / 2:
                    continue  # a normal long poll; otherwise the learner is shutting down
            except grpc.RpcError as e:
                if self._stop.is_set():
                    return
                if e.code() in _FATAL:
                    self._fail(f"learner refused {self.actor_id}: {e.code().name}: {e.details()}")
                    return
            except codec.CodecError as e:
                log.error("actor %s: bad parameters from the learner: %s", self.actor_id, e)
                self._counts["bad_params"] += 1
                held = ("", 0, 0)  # fetch everything again
            self._stop.wait(delay * self._rng.uniform(0.5, 1.0))
            delay = min(2 * delay, self._backoff[1])

    # -- spilling to disk -----------------------------------------------------------------------

    def _should_spill(self) -> bool:
        return (
            self._spill_dir is not None
            and len(self._pending) > 0
            and self._mem_bytes > self._max_queue_bytes // 2
            and self._spill_bytes < self._max_spill_bytes
        )

    def _waiting_for_spill(self, nbytes: int) -> bool:
        """A send of nbytes has no room yet, but the spiller will make some (caller holds lock)."""
        return (
            self._mem_bytes + nbytes > self._max_queue_bytes
            and self._spill_bytes < self._max_spill_bytes
            and not self._stop.is_set()
        )

    def _spill_loop(self) -> None:
        assert self._spill_dir is not None
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stop.is_set() or self._should_spill())
                if self._stop.is_set():
                    return
                items = self._take_pending()
                batch = _Batch(n=len(items), nbytes=sum(b for _, _, b, _ in items))
                batch.items = [(flat, version) for flat, version, _, _ in items]
                self._chunks.append(batch)
                number = self._spill_counter = self._spill_counter + 1
            path = self._spill_dir / f"chunk-{number:012d}.npz"
            _write_npz(path, *batch.load())
            with self._cond:
                if batch.taken:  # the sender got to it first: it is sent from memory
                    path.unlink()
                    continue
                batch.path, batch.items, batch.stacked, batch.in_memory = path, None, None, False
                self._mem_bytes -= batch.nbytes
                self._spill_bytes += batch.nbytes
                self._counts["spilled"] += batch.n
                self._cond.notify_all()  # a send may wait for the memory this freed

    def _open_spill_dir(self) -> None:
        """Lock the directory for this process and queue the batches a previous run left there."""
        assert self._spill_dir is not None
        self._spill_dir.mkdir(parents=True, exist_ok=True)
        lock = open(self._spill_dir / ".lock", "w")  # held (locked) until close
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            lock.close()
            raise RuntimeError(f"spill_dir {self._spill_dir} is in use by another client") from e
        owner = self._spill_dir / "actor_id"
        if owner.exists() and owner.read_text() != self.actor_id:
            lock.close()
            raise ValueError(f"spill_dir {self._spill_dir} belongs to actor {owner.read_text()!r}")
        owner.write_text(self.actor_id)
        self._lock_file = lock
        for tmp in self._spill_dir.glob("*.tmp"):  # half-written by a process that died
            tmp.unlink()
        found = []
        for path in self._spill_dir.iterdir():
            match = _SPILL_RE.match(path.name)
            if match is None:
                continue
            with np.load(path, allow_pickle=False) as z:
                n = len(z["v"])
                nbytes = sum(z[k].nbytes for k in z.files if k.startswith("t/"))
            sealed = match.group(1) == "sealed"
            # Sealed batches (already numbered) go first: they are older than any chunk.
            found.append((not sealed, int(match.group(2)), path, n, nbytes, sealed))
        self._spill_counter = 0
        for _, number, path, n, nbytes, sealed in sorted(found):
            batch = _Batch(
                n=n, nbytes=nbytes, path=path, in_memory=False, seq=number if sealed else 0
            )
            self._chunks.append(batch)
            self._spill_bytes += nbytes
            if sealed:
                self._next_seq = max(self._next_seq, number + 1)
            else:
                self._spill_counter = max(self._spill_counter, number)
        if found:
            log.info("actor %s: resuming %d spilled batches", self.actor_id, len(found))

    def _keep_unsent(self) -> None:
        """At close: write what is still queued to spill_dir, or count it as lost."""
        batches = [b for b in [self._inflight, *self._chunks] if b is not None]
        if self._pending:
            items = list(self._pending)
            batch = _Batch(n=len(items), nbytes=sum(b for _, _, b, _ in items))
            batch.items = [(flat, version) for flat, version, _, _ in items]
            batches.append(batch)
        unsent = sum(b.n for b in batches)
        if self._spill_dir is not None:
            for batch in batches:
                if batch.path is None:
                    if batch.seq:
                        name = f"sealed-{batch.seq:012d}.npz"
                    else:
                        self._spill_counter += 1
                        name = f"chunk-{self._spill_counter:012d}.npz"
                    _write_npz(self._spill_dir / name, *batch.load())
            if self._lock_file is not None:
                self._lock_file.close()
            if unsent:
                log.info("actor %s: %d unsent kept in %s", self.actor_id, unsent, self._spill_dir)
        elif unsent:
            self._counts["lost_at_close"] += unsent
            log.warning("actor %s: closed with %d transitions not delivered", self.actor_id, unsent)

    # -- helpers ---------------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._stop.is_set():
            raise RuntimeError("ActorClient is closed")

    def _fail(self, message: str) -> None:
        log.error("actor %s: %s", self.actor_id, message)
        with self._cond:
            self._fatal = TransportError(message)
            self._cond.notify_all()

    def _log_drop(self) -> None:
        now = time.monotonic()
        if now - self._last_drop_log >= 10.0:
            self._last_drop_log = now
            log.warning(
                "actor %s: queue full (%d bytes): %d transitions dropped so far",
                self.actor_id,
                self._max_queue_bytes,
                self._counts["dropped"],
            )


Signature = Mapping[str, tuple[np.dtype, tuple[int, ...]]]


def _difference(expected: Signature, got: Signature) -> str:
    """Name the first field whose presence, dtype or shape differs from the first transition's."""
    for key in sorted(set(expected) | set(got)):
        if expected.get(key) != got.get(key):
            return f"{key}: (dtype, shape) {got.get(key)}, first transition: {expected.get(key)}"
    return "differs from the first transition"
