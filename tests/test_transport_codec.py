"""Array codec: round trips of nested dicts of arrays, chunking, and validation of what arrives."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from serl.distributed import codec
from serl.distributed.codec import CodecError, Limits, OversizeError
from serl.distributed.proto import transport_pb2 as pb


def wire(arrays: list[pb.Array]) -> list[pb.Array]:
    """Through the real serialisation, as a peer would receive them."""
    data = pb.TransitionBatch(arrays=arrays).SerializeToString()
    return list(pb.TransitionBatch.FromString(data).arrays)


def assert_trees_equal(a: dict, b: dict) -> None:
    fa, fb = codec.flatten(a), codec.flatten(b)
    assert fa.keys() == fb.keys()
    for key in fa:
        assert fa[key].dtype == fb[key].dtype, key
        assert fa[key].shape == fb[key].shape, key
        np.testing.assert_array_equal(fa[key], fb[key], err_msg=key)


def contract_batch(b: int, rng: np.random.Generator) -> dict:
    """A batch in the shape of the data/agents batch contract, images stacked over time."""
    obs = lambda: {  # noqa: E731
        "front": rng.integers(0, 256, (b, 2, 8, 8, 3), dtype=np.uint8),
        "wrist": rng.integers(0, 256, (b, 2, 8, 8, 3), dtype=np.uint8),
        "state": rng.standard_normal((b, 2, 7)).astype(np.float32),
    }
    return {
        "observations": obs(),
        "actions": rng.uniform(-1, 1, (b, 4)).astype(np.float32),
        "rewards": rng.standard_normal(b).astype(np.float32),
        "masks": np.ones(b, np.float32),
        "dones": np.zeros(b, np.float32),
        "next_observations": obs(),
    }


def test_batch_contract_round_trip() -> None:
    batch = contract_batch(5, np.random.default_rng(0))
    out = codec.decode(wire(codec.encode(batch)))
    assert_trees_equal(batch, out)
    assert not out["actions"].flags.writeable  # views of the received bytes, documented


@pytest.mark.parametrize("dtype", sorted(codec.DTYPES))
def test_every_whitelisted_dtype(dtype: str) -> None:
    rng = np.random.default_rng(1)
    a = (rng.standard_normal((3, 2)) * 100).astype(dtype)
    tree = {"x": a, "scalar": np.asarray(a.flat[0]), "empty": np.zeros((0, 3), dtype)}
    assert_trees_equal(tree, codec.decode(wire(codec.encode(tree))))


def test_non_contiguous_and_big_endian_inputs() -> None:
    a = np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2]
    b = np.arange(6, dtype=">i4")
    out = codec.decode(wire(codec.encode({"a": a, "b": b})))
    np.testing.assert_array_equal(out["a"], a)
    np.testing.assert_array_equal(out["b"], b)
    assert out["b"].dtype == np.int32


keys = st.text("abcxyz_0123", min_size=1, max_size=6)
leaves = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.int64, np.float32, np.float64, np.bool_]),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4),
)
trees = st.recursive(
    leaves, lambda sub: st.dictionaries(keys, sub, min_size=1, max_size=4), max_leaves=8
)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(keys, trees, min_size=1, max_size=4), st.integers(1, 200))
def test_round_trip_and_chunking_property(tree: dict, chunk_bytes: int) -> None:
    assert_trees_equal(tree, codec.decode(wire(codec.encode(tree))))
    assembler = codec.TreeAssembler()
    chunks = list(codec.chunk(tree, chunk_bytes))
    for pieces in chunks:
        assert sum(len(p.data) for p in pieces) <= chunk_bytes
        for piece in wire(pieces):
            assembler.add(piece)
    rebuilt = assembler.finish()
    assert_trees_equal(tree, rebuilt)
    assert all(leaf.flags.writeable for leaf in codec.flatten(rebuilt).values())


def test_chunks_split_large_leaves() -> None:
    params = {"w": np.arange(1000, dtype=np.float32), "b": np.ones(3, np.float32)}
    chunks = list(codec.chunk(params, 1000))
    assert len(chunks) == 5  # 4012 bytes in pieces of at most 1000
    assembler = codec.TreeAssembler()
    for piece in [p for c in chunks for p in c]:
        assembler.add(piece)
    assert_trees_equal(params, assembler.finish())


def test_assembler_refuses_out_of_order_and_incomplete() -> None:
    pieces = [p for c in codec.chunk({"w": np.arange(100, dtype=np.float64)}, 300) for p in c]
    assembler = codec.TreeAssembler()
    with pytest.raises(CodecError, match="first piece at offset 300"):
        assembler.add(pieces[1])
    assembler.add(pieces[0])
    with pytest.raises(CodecError, match="expected offset 300"):
        assembler.add(pieces[2])
    with pytest.raises(CodecError, match="got 300 of 800 bytes"):
        assembler.finish()


def raw(path="x", dtype="float32", shape=(2,), data=b"\0" * 8, offset=0) -> pb.Array:
    return pb.Array(path=path, dtype=dtype, shape=shape, data=data, offset=offset)


@pytest.mark.parametrize(
    ("arrays", "error", "message"),
    [
        ([raw(dtype="object")], CodecError, "dtype 'object' is not one of"),
        ([raw(dtype="complex64")], CodecError, "is not one of"),
        ([raw(shape=(3,))], CodecError, "shape \\(3,\\) of float32 needs 12"),
        ([raw(shape=(-1, -8))], CodecError, "invalid shape"),
        ([raw(shape=(1,) * 9, data=b"\0" * 4)], CodecError, "invalid shape"),
        ([raw(path="")], CodecError, "keys must be non-empty"),
        ([raw(path="a//b")], CodecError, "keys must be non-empty"),
        ([raw(path="a/b c")], CodecError, "keys must be non-empty"),
        ([raw(), raw()], CodecError, "x: given twice"),
        ([raw("a"), raw("a/b")], CodecError, "both a leaf and a dict"),
        ([raw(offset=4, data=b"\0" * 4)], CodecError, "at offset 4"),
        ([raw(shape=(1 << 40, 1 << 40))], OversizeError, "exceeds the cap"),
        ([raw(f"k{i}") for i in range(5)], OversizeError, "more than 4 leaves"),
        ([raw("/".join("abcdefghij"))], CodecError, "nested 10 deep"),
    ],
)
def test_decode_refuses(arrays: list[pb.Array], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        codec.decode(wire(arrays), Limits(max_bytes=1 << 20, max_leaves=4))


def test_decode_total_size_cap() -> None:
    arrays = codec.encode({"a": np.zeros(100, np.uint8), "b": np.zeros(100, np.uint8)})
    codec.decode(arrays, Limits(max_bytes=200))
    with pytest.raises(OversizeError, match="b: the tree exceeds 150 bytes"):
        codec.decode(arrays, Limits(max_bytes=150))


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ({"a": np.array([object()])}, "dtype object"),
        ({"a": np.array(["s"])}, "dtype <U1"),
        ({"a/b": np.zeros(1)}, "keys must be non-empty"),
        ({3: np.zeros(1)}, "keys must be"),
        ({"a": np.zeros((1,) * 9)}, "9 dimensions"),
    ],
)
def test_encode_refuses(tree: dict, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        codec.encode(tree)


def test_merge_and_schema_hash() -> None:
    merged = codec.merge({"actor": {"enc": np.ones(2)}}, {"actor": {"mlp": np.zeros(3)}})
    assert set(merged["actor"]) == {"enc", "mlp"}
    with pytest.raises(CodecError, match="actor/enc: present in both"):
        codec.merge({"actor": {"enc": np.ones(2)}}, {"actor": {"enc": np.ones(2)}})
    h = codec.schema_hash({"b": [1, 2], "a": "float32"})
    assert h == codec.schema_hash({"a": "float32", "b": [1, 2]})
    assert h != codec.schema_hash({"a": "float32", "b": [1, 3]})
