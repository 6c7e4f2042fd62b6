"""Other tools' ResNet-10 weight files, written from our own parameters: the original SERL's
pickle and LeRobot's safetensors (what `--encoder resnet10 --pretrained PATH` reads)."""

import pickle
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from safetensors.numpy import save_file

from serl.networks import ResNet10


def resnet10_params(seed=3):
    return ResNet10().init(jax.random.PRNGKey(seed), jnp.zeros((1, 32, 32, 3)))["params"]


def serl_original_tree(params):
    """Our ResNet-10 parameters under the original SERL's module names (its pickle's layout)."""
    names = {
        "stem_conv": "conv_init",
        "stem_norm": "norm_init",
        "conv1": "Conv_0",
        "norm1": "MyGroupNorm_0",
        "conv2": "Conv_1",
        "norm2": "MyGroupNorm_1",
        "proj_conv": "conv_proj",
        "proj_norm": "norm_proj",
    }
    flat = {}
    for path, value in traverse_util.flatten_dict(params).items():
        top = path[0]
        top = f"ResNetBlock_{top[5]}" if top.startswith("stage") else names[top]
        flat[(top, *(names.get(p, p) for p in path[1:]))] = np.asarray(value)
    tree = traverse_util.unflatten_dict(flat)
    tree["output_head"] = {"kernel": np.zeros((512, 1000), np.float32)}
    return tree


def lerobot_state(params):
    """Our ResNet-10 parameters as LeRobot's PyTorch port names them (OIHW convolutions)."""
    state = {}

    def conv(key, p):
        state[f"{key}.weight"] = np.ascontiguousarray(np.asarray(p["kernel"]).transpose(3, 2, 0, 1))

    def norm(key, p):
        state[f"{key}.group_norm.weight"] = np.asarray(p["scale"])
        state[f"{key}.group_norm.bias"] = np.asarray(p["bias"])

    conv("embedder.0", params["stem_conv"])
    norm("embedder.1", params["stem_norm"])
    for i in range(4):
        block, p = params[f"stage{i}_block0"], f"encoder.stages.{i}"
        conv(f"{p}.conv1.conv", block["conv1"])
        norm(f"{p}.norm1", block["norm1"])
        conv(f"{p}.conv2.conv", block["conv2"])
        norm(f"{p}.norm2", block["norm2"])
        if i:
            conv(f"{p}.shortcut.0.conv", block["proj_conv"])
            norm(f"{p}.shortcut.1", block["proj_norm"])
    return state


def write_resnet10_pickle(path: Path, seed: int = 3) -> Path:
    """The original SERL's resnet10_params.pkl layout, of our ResNet-10 at `seed`."""
    path.write_bytes(pickle.dumps(serl_original_tree(resnet10_params(seed))))
    return path


def write_resnet10_safetensors(path: Path, seed: int = 3) -> Path:
    """LeRobot's ResNet-10 model.safetensors layout, of our ResNet-10 at `seed`."""
    save_file(lerobot_state(resnet10_params(seed)), str(path))
    return path
