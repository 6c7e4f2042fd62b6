"""Array codec: nested dicts of numpy arrays <-> protobuf `Array` leaves (raw bytes, no pickle).

A tree is a dict whose values are arrays or trees; a leaf travels as its "/"-joined key path,
a whitelisted dtype name, its shape and its raw little-endian bytes. Decoding validates every
field (path, dtype, shape, byte length, size caps) and raises `CodecError` naming the leaf.
Decoded arrays are read-only views of the received bytes (no copy); copy them to write.
Large trees (parameters) are cut into pieces of at most `chunk_bytes` and reassembled by
`TreeAssembler`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy: cached image features)
import numpy as np

from serl.distributed.proto import transport_pb2 as pb

Tree = dict[str, Any]
"""A nested dict whose leaves are numpy arrays."""

DTYPES = frozenset(
    {"bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64"}
    | {"float16", "bfloat16", "float32", "float64"}
)
"""The dtypes that may cross the wire (numpy names)."""
_NP_DTYPES = frozenset(np.dtype(name) for name in DTYPES)  # dtype.name is slow: compare dtypes

_KEY_RE = re.compile(r"^[A-Za-z0-9_.:\-]+$")
MAX_NDIM = 8


class CodecError(ValueError):
    """A tree that cannot be encoded, or bytes that do not decode to a valid tree."""


class OversizeError(CodecError):
    """A received tree (or leaf) larger than the caps allow."""


@dataclass(frozen=True)
class Limits:
    """Caps applied when decoding what a peer sent."""

    max_bytes: int = 64 << 20
    max_leaves: int = 1024
    max_depth: int = 8


def schema_hash(schema: Any) -> str:
    """A stable hex digest of any JSON-serialisable schema description (keys sorted)."""
    text = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@functools.lru_cache(maxsize=4096)  # the same few keys, every env step
def _valid_key(key: str) -> bool:
    return _KEY_RE.match(key) is not None


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """{"a": {"b": x}} -> {"a/b": x} with every leaf as a numpy array; checks keys and dtypes."""
    if not isinstance(tree, Mapping):
        raise CodecError(f"{prefix or 'tree'}: expected a dict, got {type(tree).__name__}")
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        if not (isinstance(key, str) and _valid_key(key)):
            raise CodecError(f"{prefix}{key!r}: keys must be non-empty and match {_KEY_RE.pattern}")
        path = f"{prefix}{key}"
        if isinstance(value, dict | Mapping):  # dict first: the ABC check is slow
            flat.update(flatten(value, path + "/"))
            continue
        array = np.asarray(value)
        dtype = array.dtype
        if dtype not in _NP_DTYPES and dtype.newbyteorder("=") not in _NP_DTYPES:
            raise CodecError(f"{path}: dtype {array.dtype} is not one of {sorted(DTYPES)}")
        if array.ndim > MAX_NDIM:
            raise CodecError(f"{path}: {array.ndim} dimensions, at most {MAX_NDIM}")
        flat[path] = array
    return flat


def unflatten(flat: Mapping[str, Any]) -> Tree:
    """{"a/b": x} -> {"a": {"b": x}}; refuses a path that is both a leaf and a subtree."""
    tree: Tree = {}
    for path, value in flat.items():
        *parents, name = path.split("/")
        node = tree
        for i, key in enumerate(parents):
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise CodecError(f"{path}: {'/'.join(parents[: i + 1])} is both a leaf and a dict")
        if name in node:
            raise CodecError(f"{path}: given twice, or both a leaf and a dict")
        node[name] = value
    return tree


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> Tree:
    """Deep union of two trees that share no leaf (static and dynamic parameters)."""
    flat = flatten(base)
    for path, leaf in flatten(extra).items():
        if path in flat:
            raise CodecError(f"{path}: present in both trees")
        flat[path] = leaf
    return unflatten(flat)


def _le_bytes(array: np.ndarray) -> bytes:
    """The array's bytes, C order, little-endian."""
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def encode(tree: Mapping[str, Any]) -> list[pb.Array]:
    """Encode a tree as whole-leaf `Array` messages."""
    return encode_flat(flatten(tree))


def encode_flat(flat: Mapping[str, np.ndarray]) -> list[pb.Array]:
    """Encode {path: array} (as `flatten` returns) as whole-leaf `Array` messages."""
    return [
        pb.Array(path=path, dtype=a.dtype.name, shape=a.shape, data=_le_bytes(a))
        for path, a in flat.items()
    ]


def _header(piece: pb.Array, limits: Limits) -> tuple[np.dtype, tuple[int, ...], int]:
    """Validate path, dtype and shape of a received leaf; returns dtype, shape, total bytes."""
    path = piece.path
    keys = path.split("/")
    if not path or not all(_KEY_RE.match(k) for k in keys):
        raise CodecError(f"leaf path {path!r}: keys must be non-empty and match {_KEY_RE.pattern}")
    if len(keys) > limits.max_depth:
        raise CodecError(f"{path}: nested {len(keys)} deep, at most {limits.max_depth}")
    if piece.dtype not in DTYPES:
        raise CodecError(f"{path}: dtype {piece.dtype!r} is not one of {sorted(DTYPES)}")
    shape = tuple(piece.shape)
    if len(shape) > MAX_NDIM or any(s < 0 for s in shape):
        raise CodecError(f"{path}: invalid shape {shape}")
    dtype = np.dtype(piece.dtype).newbyteorder("<")
    # Python ints: the product of a hostile shape must not overflow before the size check.
    nbytes = dtype.itemsize
    for s in shape:
        nbytes *= s
    if nbytes > limits.max_bytes:
        raise OversizeError(f"{path}: {nbytes} bytes exceeds the cap of {limits.max_bytes}")
    return dtype, shape, nbytes


def decode(arrays: Iterable[pb.Array], limits: Limits = Limits()) -> Tree:
    """Decode whole-leaf `Array` messages into a tree, validating every field."""
    flat: dict[str, np.ndarray] = {}
    total = 0
    for piece in arrays:
        if len(flat) >= limits.max_leaves:
            raise OversizeError(f"more than {limits.max_leaves} leaves")
        dtype, shape, nbytes = _header(piece, limits)
        if piece.path in flat:
            raise CodecError(f"{piece.path}: given twice")
        if piece.offset != 0 or len(piece.data) != nbytes:
            raise CodecError(
                f"{piece.path}: {len(piece.data)} bytes at offset {piece.offset}, but "
                f"shape {shape} of {dtype.name} needs {nbytes} at offset 0"
            )
        total += nbytes
        if total > limits.max_bytes:
            raise OversizeError(f"{piece.path}: the tree exceeds {limits.max_bytes} bytes")
        flat[piece.path] = np.frombuffer(piece.data, dtype=dtype).reshape(shape)
    return unflatten(flat)


def chunk(tree: Mapping[str, Any], chunk_bytes: int) -> Iterator[list[pb.Array]]:
    """Cut a tree into lists of pieces holding at most `chunk_bytes` of data each (>= 1 list)."""
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be >= 1, got {chunk_bytes}")
    current: list[pb.Array] = []
    room = chunk_bytes
    for path, array in flatten(tree).items():
        data = _le_bytes(array)
        offset = 0
        while True:
            if room == 0:
                yield current
                current, room = [], chunk_bytes
            take = min(room, len(data) - offset)
            current.append(
                pb.Array(
                    path=path,
                    dtype=array.dtype.name,
                    shape=array.shape,
                    data=data[offset : offset + take],
                    offset=offset,
                )
            )
            room -= take
            offset += take
            if offset >= len(data):
                break
    yield current


class TreeAssembler:
    """Rebuilds a tree from the pieces `chunk` made, in order, validating as it goes."""

    def __init__(self, limits: Limits = Limits()) -> None:
        self._limits = limits
        self._leaves: dict[str, tuple[np.dtype, tuple[int, ...], bytearray]] = {}
        self._filled: dict[str, int] = {}
        self._total = 0

    def add(self, piece: pb.Array) -> None:
        """Append one piece; each leaf's pieces must arrive in order, without gaps."""
        dtype, shape, nbytes = _header(piece, self._limits)
        if piece.path not in self._leaves:
            if piece.offset != 0:
                raise CodecError(f"{piece.path}: first piece at offset {piece.offset}, not 0")
            if len(self._leaves) >= self._limits.max_leaves:
                raise OversizeError(f"more than {self._limits.max_leaves} leaves")
            self._total += nbytes
            if self._total > self._limits.max_bytes:
                raise OversizeError(f"{piece.path}: tree exceeds {self._limits.max_bytes} bytes")
            self._leaves[piece.path] = (dtype, shape, bytearray(nbytes))
            self._filled[piece.path] = 0
        known_dtype, known_shape, buffer = self._leaves[piece.path]
        filled = self._filled[piece.path]
        if (dtype, shape) != (known_dtype, known_shape):
            raise CodecError(f"{piece.path}: dtype or shape changed between pieces")
        if piece.offset != filled or filled + len(piece.data) > len(buffer):
            raise CodecError(
                f"{piece.path}: piece of {len(piece.data)} bytes at offset {piece.offset}, "
                f"expected offset {filled} of {len(buffer)}"
            )
        buffer[filled : filled + len(piece.data)] = piece.data
        self._filled[piece.path] = filled + len(piece.data)

    def finish(self) -> Tree:
        """The complete tree (writable arrays); raises if a leaf is incomplete."""
        flat = {}
        for path, (dtype, shape, buffer) in self._leaves.items():
            if self._filled[path] != len(buffer):
                raise CodecError(f"{path}: got {self._filled[path]} of {len(buffer)} bytes")
            flat[path] = np.frombuffer(buffer, dtype=dtype).reshape(shape)
        return unflatten(flat)


def nbytes(tree: Mapping[str, Any]) -> int:
    """Total bytes of the leaves of a tree."""
    return sum(a.nbytes for a in flatten(tree).values())
