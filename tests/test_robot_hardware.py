"""Hardware-facing parts without the hardware: the camera reader thread with a scripted source
behind the FrameSource interface, and the import guards of the optional drivers."""

from __future__ import annotations

import importlib.util
import threading
import time

import numpy as np
import pytest

from serl.robot import transforms as tf
from serl.robot.backends import make_backend
from serl.robot.backends.franka import pose_from_o_t_ee
from serl.robot.cameras import Camera, FrameSource, OpenCVSource, RealSenseSource
from serl.robot.errors import CameraTimeout, HardwareUnavailable


class ScriptedSource(FrameSource):
    """Delivers `frames` frames, then fails or freezes like an unplugged camera."""

    def __init__(self, frames: int, then: str = "freeze") -> None:
        self.left, self.then = frames, then
        self.release = threading.Event()
        self.opened = self.closed = False

    def open(self) -> None:
        self.opened = True

    def grab(self) -> np.ndarray:
        if self.left > 0:
            self.left -= 1
            self.release.wait(0.01)
            return np.full((4, 6, 3), self.left, dtype=np.uint8)
        if self.then == "error":
            raise OSError("USB disconnected")
        self.release.wait(0.05)
        return self.grab() if self.left > 0 else self._frozen()

    def _frozen(self) -> np.ndarray:
        self.release.wait(0.05)
        raise TimeoutError("no frame")

    def close(self) -> None:
        self.closed = True
        self.release.set()


def test_camera_returns_fresh_frames_then_times_out_when_the_source_freezes() -> None:
    source = ScriptedSource(frames=5)
    cam = Camera(source, "wrist", max_age_s=0.1).start()
    first = cam.read(timeout=2.0)
    assert first.image.shape == (4, 6, 3) and first.seq >= 1
    with pytest.raises(CameraTimeout, match=r"wrist.*no fresh frame"):
        for _ in range(100):  # frames stop after 5: soon every frame is older than max_age
            cam.read(timeout=0.2)
            time.sleep(0.02)
    cam.close()
    assert source.opened and source.closed


def test_camera_timeout_reports_the_source_error() -> None:
    cam = Camera(ScriptedSource(frames=0, then="error"), "front").start()
    with pytest.raises(CameraTimeout, match="USB disconnected"):
        cam.read(timeout=0.2)
    cam.close()


def test_libfranka_pose_is_read_column_major() -> None:
    rot = tf.to_matrix(tf.from_euler([np.pi, 0.1, 0.3]))
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rot, [0.5, -0.1, 0.3]
    pos, quat = pose_from_o_t_ee(m.T.reshape(-1))  # libfranka sends O_T_EE column-major
    np.testing.assert_allclose(pos, [0.5, -0.1, 0.3])
    assert tf.angle_between(quat, tf.from_matrix(rot)) < 1e-9


@pytest.mark.skipif(
    importlib.util.find_spec("pylibfranka") is not None,
    reason="pylibfranka installed: the guard is not exercised",
)
def test_hardware_drivers_fail_clearly_without_their_packages() -> None:
    with pytest.raises(HardwareUnavailable, match=r"serl\[robot\]"):
        make_backend("franka", robot_ip="127.0.0.1")
    if importlib.util.find_spec("pyrealsense2") is None:
        with pytest.raises(HardwareUnavailable):
            RealSenseSource("123").open()
    if importlib.util.find_spec("cv2") is None:
        with pytest.raises(HardwareUnavailable):
            OpenCVSource(0).open()
