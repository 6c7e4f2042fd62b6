"""Save -> restore in a fresh process: every leaf of every network bit-identical, and the next
update identical too (a resume that silently re-initialises a network fails here)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from agents_helpers import (
    ACTION_DIM,
    PIXEL_OBS,
    STATE_OBS,
    leaf_hashes,
    random_batch,
    tiny_bc,
    tiny_drq,
    tiny_sac,
)

from serl.agents import (
    PRESETS,
    config_from_dict,
    config_to_dict,
    create,
    load_meta,
    restore,
    save,
    spec_from_dict,
    spec_to_dict,
    update,
)

pytestmark = pytest.mark.filterwarnings("ignore:the image backbone is frozen")
HERE = Path(__file__).parent
CASES = {
    "sac": (tiny_sac, STATE_OBS, "state"),
    "drq": (tiny_drq, PIXEL_OBS, "pixel"),  # frozen backbone: the `frozen` subtree is saved too
    "bc": (tiny_bc, STATE_OBS, "state"),
}


def trained(name, seed=0):
    make, example, _ = CASES[name]
    cfg = make()
    state = create(cfg, example, ACTION_DIM, seed=seed)
    for i in range(2):
        b = random_batch(example, cfg.sample_size, seed=100 + i)
        if name == "bc":
            b = {"observations": b["observations"], "actions": b["actions"]}
        state, _ = update(state, b)
    return state


def test_restore_in_a_new_process_is_bit_identical(tmp_path):
    expected, args = {}, []
    for name, (_, example, example_name) in CASES.items():
        state = trained(name)
        directory = str(tmp_path / name)
        save(state, directory)
        restored_here = restore(directory)
        assert leaf_hashes(restored_here) == leaf_hashes(state)
        batch = random_batch(example, state.config.sample_size, seed=7)
        hashes = leaf_hashes(state)
        nxt, metrics = update(state, batch)
        expected[directory] = {
            "restored": hashes,
            "next": leaf_hashes(nxt),
            "metrics": leaf_hashes(metrics),
        }
        args.append(f"{directory},{example_name},7")

    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    )
    proc = subprocess.run(
        [sys.executable, str(HERE / "agents_helpers.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    for directory, want in expected.items():
        # every network, target, optimizer state, temperature, RNG and counter
        assert got[directory]["restored"] == want["restored"], directory
        assert got[directory]["next"] == want["next"], directory
        assert got[directory]["metrics"] == want["metrics"], directory


def test_restore_is_not_a_fresh_init(tmp_path):
    state = trained("sac")
    save(state, tmp_path / "ck")
    fresh = leaf_hashes(create(tiny_sac(), STATE_OBS, ACTION_DIM, seed=0))
    restored = leaf_hashes(restore(tmp_path / "ck"))
    differing = [k for k in fresh if fresh[k] != restored[k]]
    # every trained leaf (all but e.g. nothing) differs from a fresh initialisation
    assert any(".actor" in k for k in differing) and any(".target_critic" in k for k in differing)
    assert any(".temp" in k for k in differing) and any(".critic" in k for k in differing)


def test_save_overwrites_and_writes_json_config(tmp_path):
    state = trained("sac")
    save(state, tmp_path / "ck")
    state, _ = update(state, random_batch(STATE_OBS, state.config.sample_size, seed=5))
    save(state, tmp_path / "ck")
    assert int(restore(tmp_path / "ck").step) == 3
    meta = json.loads((tmp_path / "ck" / "agent.json").read_text())
    assert meta["agent"] == "sac" and meta["config"]["num_qs"] == 4
    config, spec = load_meta(tmp_path / "ck")
    assert config == state.config and spec == state.spec


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_config_roundtrips_through_json(name):
    cfg = PRESETS[name]
    assert config_from_dict(json.loads(json.dumps(config_to_dict(cfg)))) == cfg


def test_spec_roundtrips_through_json():
    spec = create(tiny_drq(), PIXEL_OBS, ACTION_DIM).spec
    assert spec_from_dict(json.loads(json.dumps(spec_to_dict(spec)))) == spec


def test_unknown_config_field_is_an_error():
    d = config_to_dict(PRESETS["sac_state"])
    d["config"]["no_such_field"] = 1
    with pytest.raises(ValueError, match=r"sac config: unknown fields \['no_such_field'\]"):
        config_from_dict(d)


def test_restore_checks_leaf_shapes(tmp_path):
    state = trained("sac")
    save(state, tmp_path / "ck")
    meta_path = tmp_path / "ck" / "agent.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["hidden_dims"] = [16, 16]  # a config that does not match the arrays
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="do not match"):
        restore(tmp_path / "ck")
    np.testing.assert_array_equal(jax.device_get(state.step), 2)
