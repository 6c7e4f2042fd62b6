"""Pretrained image-backbone weights from a local file (no network access at run time).

File format (`.npz`, written by `numpy.savez`; loaded with `allow_pickle=False`, so a file can
carry arrays only, never code): one array per parameter, named by its "/"-joined path in the
Flax parameter tree of the backbone module, in Flax layout (conv kernels HWIO). For ResNet-10
(`serl.networks.encoders.ResNet10`):

    stem_conv/kernel                (7, 7, 3, 64)
    stem_norm/scale, stem_norm/bias (64,)
    stage{i}_block0/conv1/kernel    (3, 3, C_in, C)   C = 64 * 2**i
    stage{i}_block0/norm1/{scale,bias}, conv2/kernel (3, 3, C, C), norm2/{scale,bias}
    stage{i}_block0/proj_conv/kernel (1, 1, C_in, C), proj_norm/{scale,bias}   (i = 1, 2, 3)

`save_params_npz(path, params)` writes this format from any parameter tree (e.g. converted
ImageNet weights: transpose PyTorch OIHW conv kernels to HWIO). Input channels may differ when
frames are stacked (T*3 channels): a stem kernel with 3 input channels is tiled T times and
divided by T, so a stack of identical frames gives the single-frame response.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import traverse_util

Params = Mapping[str, Any]


def save_params_npz(path: str | os.PathLike, params: Params) -> None:
    """Write a parameter tree as an `.npz` of "/"-joined paths (the format above)."""
    flat = traverse_util.flatten_dict(dict(params), sep="/")
    np.savez(path, **{k: np.asarray(v) for k, v in flat.items()})


def load_params_npz(path: str | os.PathLike) -> dict[str, Any]:
    """Read an `.npz` in the format above into a nested dict of float32 numpy arrays."""
    with np.load(path, allow_pickle=False) as data:
        flat = {k: np.asarray(data[k], dtype=np.float32) for k in data.files}
    if not flat:
        raise ValueError(f"{path}: no arrays in pretrained-weight file")
    return traverse_util.unflatten_dict(flat, sep="/")


def _adapt(name: str, loaded: np.ndarray, target_shape: tuple[int, ...]) -> np.ndarray:
    if loaded.shape == tuple(target_shape):
        return loaded
    # Stacked frames: tile a conv kernel's input channels (HWIO) and rescale.
    if (
        loaded.ndim == 4
        and loaded.shape[:2] + loaded.shape[3:] == tuple(target_shape[:2]) + tuple(target_shape[3:])
        and target_shape[2] % loaded.shape[2] == 0
    ):
        reps = target_shape[2] // loaded.shape[2]
        return np.tile(loaded, (1, 1, reps, 1)) / reps
    raise ValueError(f"pretrained {name}: shape {loaded.shape} does not fit {tuple(target_shape)}")


def load_pretrained(params: Params, loaded: Params) -> dict[str, Any]:
    """Return `params` with every leaf replaced by the same-path leaf of `loaded`.

    The two trees must hold exactly the same paths (a missing or extra name is an error, so a
    file for another architecture cannot half-load silently); shapes must match up to the
    stacked-frame stem adaptation described in the module docstring.
    """
    flat_p = traverse_util.flatten_dict(dict(params), sep="/")
    flat_l = traverse_util.flatten_dict(dict(loaded), sep="/")
    missing = sorted(set(flat_p) - set(flat_l))
    extra = sorted(set(flat_l) - set(flat_p))
    if missing or extra:
        raise ValueError(f"pretrained weights do not match: missing {missing}, unexpected {extra}")
    out = {
        k: _adapt(k, np.asarray(flat_l[k]), np.shape(v)).astype(np.float32)
        for k, v in flat_p.items()
    }
    return traverse_util.unflatten_dict(out, sep="/")
