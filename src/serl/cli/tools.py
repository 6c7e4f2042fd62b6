"""`serl render`, `serl weights` and `serl robot-server`: cameras, backbone weights, the arm."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import tyro

from serl.cli.common import setup_logging
from serl.errors import ConfigError


def render(
    env_id: tyro.conf.Positional[str] = "serl/PandaPickCubeVision-v0",
    out: Path = Path("render.png"),
    seed: int = 0,
    size: int = 256,
) -> None:
    """Write a PNG of the front and wrist cameras of a serl sim env at reset.

    Args:
        env_id: A serl sim env with cameras.
        out: The PNG to write.
        seed: The reset seed (where the objects start).
        size: Each camera's image size in pixels (square).
    """
    import gymnasium as gym
    import imageio.v3 as iio

    import serl.envs  # noqa: F401  (registers the ids)

    env = gym.make(env_id, render_mode="rgb_array", render_size=size)
    env.reset(seed=seed)
    image = env.render()
    env.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(out, image)
    print(f"wrote {out} ({image.shape[1]}x{image.shape[0]}, cameras front | wrist)")


def weights(
    command: tyro.conf.Positional[Literal["list", "convert", "clear"]] = "list",
    path: Path | None = None,
    backbone: Literal["mobilenet_v2", "resnet10"] = "resnet10",
) -> None:
    """The pretrained-weight cache: `list` what it holds (JSON), `convert` a file into it now
    (--path; "imagenet" is the bundled MobileNetV2), `clear` it (files are converted again when
    next needed).

    Args:
        command: list, convert or clear.
        path: For convert: the original SERL's resnet10_params.pkl, LeRobot's ResNet-10
            model.safetensors, a torchvision MobileNetV2 .pth, or "imagenet".
        backbone: For convert: the network the file holds.
    """
    import json
    import shutil

    from serl.networks import cached_weights, resolve_pretrained, weight_cache_dir

    if command == "convert":
        if path is None:
            raise ValueError("serl weights convert needs --path FILE (or --path imagenet)")
        source = "imagenet" if str(path) == "imagenet" else path
        print(resolve_pretrained("mobilenet_v2" if source == "imagenet" else backbone, source))
    elif command == "clear":
        entries = cached_weights()
        shutil.rmtree(weight_cache_dir(), ignore_errors=True)
        print(f"removed {len(entries)} converted weight files from {weight_cache_dir()}")
    else:
        print(json.dumps({"cache": str(weight_cache_dir()), "files": cached_weights()}, indent=2))


def robot_server(
    backend: Literal["sim", "franka"] = "sim",
    host: str = "127.0.0.1",
    port: int = 5000,
    scene: Literal["empty", "peg"] = "empty",
    cameras: tuple[str, ...] = ("front", "wrist"),
    camera_size: int = 128,
    time_scale: float = 1.0,
    robot_ip: str = "172.16.0.2",
    gripper: Literal["franka", "robotiq", "none"] = "franka",
    robotiq_port: str = "/dev/ttyUSB0",
    watchdog_s: float = 0.5,
    token: str | None = None,
) -> int:
    """Serve the robot HTTP API (OpenAPI at /openapi.json); token: --token or $SERL_ROBOT_TOKEN.

    Args:
        backend: sim (MuJoCo, no hardware) or franka (libfranka; pip install 'serl[robot]').
        host: Address to listen on; keep 127.0.0.1 unless a token is set.
        port: Port to listen on.
        scene: The sim backend's scene.
        cameras: The sim backend's cameras.
        camera_size: The sim cameras' image size in pixels (square).
        time_scale: Run the sim this many times faster than real time (its physics, cameras,
            watchdog and timed moves, and the env loop of its clients, all on the robot's clock).
        robot_ip: The arm's address (franka backend).
        gripper: The gripper on the arm (franka backend).
        robotiq_port: The Robotiq gripper's serial port.
        watchdog_s: Hold the arm when no command arrived for this long.
        token: The API's secret; default: $SERL_ROBOT_TOKEN.
    """
    import os

    from serl.robot.backends import make_backend
    from serl.robot.server import ServerConfig, create_app, serve

    setup_logging()
    if backend == "sim":
        arm = make_backend(
            "sim",
            scene=scene,
            cameras=cameras,
            camera_size=(camera_size, camera_size),
            time_scale=time_scale,
        )
    elif time_scale != 1.0:
        raise ConfigError("--time-scale is for the sim backend: a real arm runs in real time")
    else:
        arm = make_backend("franka", robot_ip=robot_ip, gripper=gripper, robotiq_port=robotiq_port)
    config = ServerConfig(watchdog_s=watchdog_s, token=token or os.environ.get("SERL_ROBOT_TOKEN"))
    serve(create_app(arm, config), host=host, port=port)
    return 0
