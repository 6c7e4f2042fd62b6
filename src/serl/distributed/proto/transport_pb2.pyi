from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Array(_message.Message):
    __slots__ = ("path", "dtype", "shape", "data", "offset")
    PATH_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    path: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    offset: int
    def __init__(self, path: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ..., offset: _Optional[int] = ...) -> None: ...

class HandshakeRequest(_message.Message):
    __slots__ = ("protocol_version", "schema_hash", "actor_id")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_HASH_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    schema_hash: str
    actor_id: str
    def __init__(self, protocol_version: _Optional[int] = ..., schema_hash: _Optional[str] = ..., actor_id: _Optional[str] = ...) -> None: ...

class HandshakeReply(_message.Message):
    __slots__ = ("session_id", "server_id", "acked_seq", "param_version", "max_batch_bytes", "max_batch_transitions", "delivered")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    ACKED_SEQ_FIELD_NUMBER: _ClassVar[int]
    PARAM_VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    server_id: str
    acked_seq: int
    param_version: int
    max_batch_bytes: int
    max_batch_transitions: int
    delivered: int
    def __init__(self, session_id: _Optional[str] = ..., server_id: _Optional[str] = ..., acked_seq: _Optional[int] = ..., param_version: _Optional[int] = ..., max_batch_bytes: _Optional[int] = ..., max_batch_transitions: _Optional[int] = ..., delivered: _Optional[int] = ...) -> None: ...

class TransitionBatch(_message.Message):
    __slots__ = ("actor_id", "session_id", "seq", "param_versions", "arrays")
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PARAM_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    ARRAYS_FIELD_NUMBER: _ClassVar[int]
    actor_id: str
    session_id: str
    seq: int
    param_versions: _containers.RepeatedScalarFieldContainer[int]
    arrays: _containers.RepeatedCompositeFieldContainer[Array]
    def __init__(self, actor_id: _Optional[str] = ..., session_id: _Optional[str] = ..., seq: _Optional[int] = ..., param_versions: _Optional[_Iterable[int]] = ..., arrays: _Optional[_Iterable[_Union[Array, _Mapping]]] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("acked_seq",)
    ACKED_SEQ_FIELD_NUMBER: _ClassVar[int]
    acked_seq: int
    def __init__(self, acked_seq: _Optional[int] = ...) -> None: ...

class ParamsRequest(_message.Message):
    __slots__ = ("server_id", "version", "static_id", "wait_s")
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATIC_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    server_id: str
    version: int
    static_id: int
    wait_s: float
    def __init__(self, server_id: _Optional[str] = ..., version: _Optional[int] = ..., static_id: _Optional[int] = ..., wait_s: _Optional[float] = ...) -> None: ...

class ParamsChunk(_message.Message):
    __slots__ = ("server_id", "version", "static_id", "is_static", "pieces", "last")
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATIC_ID_FIELD_NUMBER: _ClassVar[int]
    IS_STATIC_FIELD_NUMBER: _ClassVar[int]
    PIECES_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    server_id: str
    version: int
    static_id: int
    is_static: bool
    pieces: _containers.RepeatedCompositeFieldContainer[Array]
    last: bool
    def __init__(self, server_id: _Optional[str] = ..., version: _Optional[int] = ..., static_id: _Optional[int] = ..., is_static: _Optional[bool] = ..., pieces: _Optional[_Iterable[_Union[Array, _Mapping]]] = ..., last: _Optional[bool] = ...) -> None: ...

class Report(_message.Message):
    __slots__ = ("actor_id", "kind", "env_step", "values")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ENV_STEP_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    actor_id: str
    kind: str
    env_step: int
    values: _containers.ScalarMap[str, float]
    def __init__(self, actor_id: _Optional[str] = ..., kind: _Optional[str] = ..., env_step: _Optional[int] = ..., values: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
