"""Pretrained backbones: the converted ImageNet MobileNetV2 reproduces torchvision's features, the
readers of other tools' files run no code from them, and every supported file converts into
the layout our backbones load."""

import os
import pickle
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file
from weights_helpers import lerobot_state, resnet10_params, serl_original_tree

from serl.networks import (
    backbone_input,
    cached_weights,
    load_params_npz,
    load_pretrained,
    make_backbone,
    resolve_pretrained,
)
from serl.networks.pretrained import bundled_mobilenet_v2, convert_weights
from serl.networks.weight_files import (
    UnsafePickleError,
    check_sha256,
    read_array_pickle,
    read_torch_checkpoint,
)

DATA = Path(__file__).parent / "data"
GOLDEN = np.load(DATA / "backbone_golden.npz")


@pytest.fixture(autouse=True)
def weight_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SERL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "weights"


def backbone_features(name, stride, params, images):
    net = make_backbone(name, stride)
    return np.asarray(net.apply({"params": params}, backbone_input(jnp.asarray(images), name)))


@pytest.mark.parametrize("stride", [16, 32])
def test_converted_mobilenet_v2_reproduces_torchvision(stride, weight_cache):
    # tests/data/make_backbone_golden.py computed the reference with torchvision itself
    path = resolve_pretrained("mobilenet_v2", "imagenet")
    assert path.parent == weight_cache and path.suffix == ".npz"
    net = make_backbone("mobilenet_v2", stride)
    init = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))["params"]
    params = load_pretrained(init, load_params_npz(path), allow_unused=stride < 32)
    ours = backbone_features("mobilenet_v2", stride, params, GOLDEN["images"])
    reference = GOLDEN[f"mobilenet_v2_stride{stride}"]
    assert (
        ours.shape
        == reference.shape
        == (4, 128 // stride, 128 // stride, 96 if stride == 16 else 320)
    )
    np.testing.assert_allclose(ours, reference, atol=5e-5 * np.abs(reference).max())


def test_the_weight_cache_converts_once_and_says_what_it_holds(weight_cache):
    first = resolve_pretrained("mobilenet_v2", "imagenet")
    stamp = first.stat().st_mtime_ns
    assert resolve_pretrained("mobilenet_v2", "imagenet") == first
    assert first.stat().st_mtime_ns == stamp  # read from the cache, not converted again
    (entry,) = cached_weights()
    assert entry["backbone"] == "mobilenet_v2" and entry["path"] == str(first)
    assert entry["sha256"].startswith("b0353104") and entry["bytes"] > 1_000_000


def test_a_damaged_checkpoint_fails_its_sha256_check(tmp_path):
    copy = tmp_path / "mobilenet_v2.pth"
    data = bytearray(bundled_mobilenet_v2().read_bytes())
    data[-1] ^= 1
    copy.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        check_sha256(copy, "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889")


@pytest.mark.parametrize("name", ["tiny_zip.pt", "tiny_legacy.pt"])
def test_torch_checkpoints_of_both_formats_read_as_arrays(name):
    state = read_torch_checkpoint(DATA / name)
    assert sorted(state) == ["a", "b", "c"]
    for key in state:
        expected = GOLDEN[f"tiny_{key}"]
        assert state[key].dtype == expected.dtype
        np.testing.assert_array_equal(state[key], expected)  # "b" is a transposed view


class RunsCode:
    """A pickle payload that would create a file if it were ever unpickled naively."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickles_naming_any_other_global_are_refused(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "resnet10_params.pkl"
    evil.write_bytes(pickle.dumps({"conv_init": {"kernel": RunsCode(marker)}}))
    with pytest.raises(UnsafePickleError, match=r"os.system|posix.system"):
        read_array_pickle(evil)
    with pytest.raises(UnsafePickleError, match="refusing"):
        resolve_pretrained("resnet10", evil)
    # a legacy-format torch checkpoint whose main pickle smuggles the same call
    legacy = tmp_path / "evil.pth"
    with open(legacy, "wb") as f:
        for head in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001}):
            pickle.dump(head, f, protocol=2)
        pickle.dump({"w": RunsCode(marker)}, f, protocol=2)
    with pytest.raises(UnsafePickleError, match="refusing"):
        read_torch_checkpoint(legacy)
    assert not marker.exists()


def test_the_originals_resnet10_pickle_converts(tmp_path):
    params = resnet10_params()
    tree = serl_original_tree(params)
    tree["conv_init"]["kernel"] = jnp.asarray(tree["conv_init"]["kernel"])  # a JAX array leaf
    path = tmp_path / "resnet10_params.pkl"
    path.write_bytes(pickle.dumps(tree))
    converted = load_params_npz(resolve_pretrained("resnet10", path))
    loaded = load_pretrained(resnet10_params(seed=4), converted)  # every name, no extras
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_lerobots_resnet10_safetensors_converts(tmp_path):
    params = resnet10_params()
    path = tmp_path / "model.safetensors"
    save_file(lerobot_state(params), str(path))
    loaded = load_pretrained(
        resnet10_params(seed=4), load_params_npz(resolve_pretrained("resnet10", path))
    )
    images = GOLDEN["images"][:2, :64, :64]
    np.testing.assert_allclose(
        backbone_features("resnet10", None, loaded, images),
        backbone_features("resnet10", None, params, images),
        rtol=1e-5,
        atol=1e-5,
    )


def test_unknown_sources_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="ships ImageNet weights for mobilenet_v2 only"):
        resolve_pretrained("resnet10", "imagenet")
    with pytest.raises(FileNotFoundError, match="no such file"):
        resolve_pretrained("resnet10", tmp_path / "missing.pkl")
    odd = tmp_path / "weights.h5"
    odd.write_bytes(b"\0")
    with pytest.raises(ValueError, match="no converter"):
        convert_weights("resnet10", odd, tmp_path / "out.npz")
    with pytest.raises(ValueError, match="weight file lacks"):
        convert_weights("mobilenet_v2", DATA / "tiny_zip.pt", tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()


def test_array_pickles_rebuild_numpy_arrays_without_jax_objects(tmp_path):
    path = tmp_path / "tree.pkl"
    path.write_bytes(pickle.dumps({"a": {"k": np.arange(3.0)}, "j": jnp.ones(2)}))
    tree = read_array_pickle(path)
    assert type(tree["j"]) is np.ndarray and type(tree["a"]["k"]) is np.ndarray
    np.testing.assert_array_equal(tree["a"]["k"], np.arange(3.0))


def test_serl_weights_converts_lists_and_clears_the_cache(weight_cache, capsys):
    import json

    from serl.cli import main

    main(["weights", "convert", "--path", "imagenet"])
    path = capsys.readouterr().out.strip()
    assert path.startswith(str(weight_cache)) and Path(path).exists()
    main(["weights"])
    listed = json.loads(capsys.readouterr().out)
    assert [f["path"] for f in listed["files"]] == [path]
    main(["weights", "clear"])
    assert "removed 1" in capsys.readouterr().out and not weight_cache.exists()


def test_a_resnet10_encoder_without_weights_is_refused_before_anything_starts(tmp_path):
    from serl.cli import main

    run = tmp_path / "run"
    with pytest.raises(ValueError, match="needs --pretrained"):
        main(
            ["train", "serl/PandaPickCubeVision-v0", "--encoder", "resnet10", "--run-dir", str(run)]
        )
    with pytest.raises(FileNotFoundError, match="no such file"):
        main(
            [
                "train",
                "serl/PandaPickCubeVision-v0",
                "--encoder",
                "resnet10",
                "--pretrained",
                str(tmp_path / "missing.pkl"),
                "--run-dir",
                str(run),
                "--num-demos",
                "0",
            ]
        )
    assert not (run / "logs").exists()  # no learner or actor was started
