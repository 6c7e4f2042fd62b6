"""Actor-learner transport over gRPC: transitions up, parameters down, exactly once.

One service (`proto/transport.proto`), four calls, every one authenticated by a shared token in
the metadata key ``x-serl-token`` (compared in constant time) and bounded by a deadline; keepalive
pings notice a dead peer within ~15 s. Arrays travel as raw little-endian bytes with a whitelisted
dtype and a shape (`codec`); nothing is pickled, and every received field is validated.

- ``Handshake(protocol_version, schema_hash, actor_id)`` -> ``(session_id, server_id, acked_seq,
  param_version, limits)``. The learner refuses another protocol version or schema hash
  (FAILED_PRECONDITION). ``acked_seq`` is the actor's watermark: the last batch the learner made
  durable. A restarted actor numbers its next batch ``acked_seq + 1``; a restarted learner
  (watermarks restored from its checkpoint) tells a surviving actor which batches it still needs.
- ``PushTransitions(actor_id, session_id, seq, param_versions, arrays)`` -> ``Ack(acked_seq)``.
  Unary, one batch in flight per actor, numbered 1, 2, 3, ...; each transition carries the
  parameter version that produced it. The learner hands a batch with ``seq == watermark + 1`` to
  ``on_transitions`` and acknowledges it only when that returns (durability is the caller's);
  ``seq <= watermark`` is a retry whose ack was lost: acknowledged, not delivered again; a jump
  past ``watermark + 1`` (the learner restored older marks than it acked) is delivered and counted
  as a gap. A push with a replaced session (the learner restarted, or a newer process took the
  actor id) is refused with FAILED_PRECONDITION and the actor handshakes again.
- ``GetParams(server_id, version, static_id, wait_s)`` -> stream of ``ParamsChunk``. A long poll:
  the learner answers as soon as its parameters differ from what the actor holds (at once for a
  late joiner), else with an empty stream after ``wait_s``. Versions increase with each
  ``publish``; trees are cut into chunks under the message limit, serialised once per publish.
  A separate static tree (frozen encoder weights) goes only to actors that lack its id.
- ``SendReport(actor_id, kind, env_step, values)``: a flat dict of floats (training statistics or
  an evaluation summary), best effort, drained by the learner loop.

Failures. Learner unreachable: the actor keeps enqueuing (bounded; optionally spilled to .npz
files), retries with jittered exponential backoff and, once back, resends its unacknowledged
batch under the same number, so every transition arrives exactly once. Actor killed: what it had
not had acknowledged is lost (unless spilled and the same spill directory is reused), the learner
goes on, and the new process resumes numbering at the watermark. Malformed, oversized,
wrong-token, wrong-schema requests: refused with INVALID_ARGUMENT, RESOURCE_EXHAUSTED,
UNAUTHENTICATED, FAILED_PRECONDITION, counted in ``LearnerServer.stats()``; the server stays up.

Regenerate the protobuf modules after editing the .proto (from the repository root)::

    .venv/bin/python -m grpc_tools.protoc -I src --python_out=src --pyi_out=src \
        --grpc_python_out=src src/serl/distributed/proto/transport.proto
"""

from serl.distributed.client import ActorClient, TransportError
from serl.distributed.codec import CodecError, OversizeError, schema_hash
from serl.distributed.server import PROTOCOL_VERSION, LearnerServer, Report, Transitions

__all__ = [
    "PROTOCOL_VERSION",
    "ActorClient",
    "CodecError",
    "LearnerServer",
    "OversizeError",
    "Report",
    "Transitions",
    "TransportError",
    "schema_hash",
]
