"""Cameras behind one interface: a source grabs frames, a reader thread keeps the latest one.

Sources: Intel RealSense (pyrealsense2), OpenCV/V4L2 (cv2) and the robot server's cameras (the
sim backend's rendered views, over HTTP). The hardware packages are optional (`serl[robot]`) and
imported only when such a source is opened. `Camera.read(timeout)` returns a frame no older
than `max_age_s` or raises CameraTimeout: a frozen camera is an error, never a stale image.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from serl.robot.errors import CameraTimeout, HardwareUnavailable, RobotError


@dataclass(frozen=True)
class Frame:
    """An RGB uint8 (H, W, 3) image with its capture time (time.monotonic) and sequence number."""

    image: np.ndarray
    time: float
    seq: int


class FrameStore:
    """Thread-safe latest-frame slot: one writer publishes, readers wait for newer frames."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None

    def publish(self, image: np.ndarray, stamp: float | None = None) -> Frame:
        """Replace the latest frame and wake every waiting reader."""
        with self._cond:
            seq = 1 if self._frame is None else self._frame.seq + 1
            self._frame = Frame(image, time.monotonic() if stamp is None else stamp, seq)
            self._cond.notify_all()
            return self._frame

    def latest(self) -> Frame | None:
        """The newest frame, or None before the first."""
        with self._cond:
            return self._frame

    def wait(
        self, predicate_after_seq: int = 0, newer_than: float = -np.inf, timeout: float = 1.0
    ) -> Frame | None:
        """Wait until a frame with seq > predicate_after_seq and time >= newer_than exists."""

        def ready() -> bool:
            f = self._frame
            return f is not None and f.seq > predicate_after_seq and f.time >= newer_than

        with self._cond:
            if self._cond.wait_for(ready, timeout=max(0.0, timeout)):
                return self._frame
            return None


class FrameSource(ABC):
    """A device that delivers RGB frames; `grab` blocks until the next one."""

    @abstractmethod
    def open(self) -> None:
        """Connect to the device."""

    @abstractmethod
    def grab(self) -> np.ndarray:
        """The next RGB uint8 (H, W, 3) frame (blocks; raises on device errors)."""

    def close(self) -> None:  # noqa: B027  (optional for sources with nothing to release)
        """Release the device."""


class Camera:
    """A source read by a background thread that keeps only the latest frame."""

    def __init__(self, source: FrameSource, name: str = "camera", max_age_s: float = 0.25) -> None:
        self.source = source
        self.name = name
        self.max_age_s = max_age_s
        self.store = FrameStore()
        self.last_error: Exception | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Camera:
        """Open the source and start the reader thread."""
        self.source.open()
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                image = self.source.grab()
            except Exception as e:
                self.last_error = e
                self._stop.wait(0.05)
                continue
            self.store.publish(image)

    def read(self, timeout: float = 1.0) -> Frame:
        """A frame captured at most max_age_s ago, waiting up to `timeout` s for one."""
        frame = self.store.wait(newer_than=time.monotonic() - self.max_age_s, timeout=timeout)
        if frame is None:
            why = f" (last error: {self.last_error!r})" if self.last_error else ""
            raise CameraTimeout(f"camera {self.name!r}: no fresh frame within {timeout} s{why}")
        return frame

    def close(self) -> None:
        """Stop the reader thread and release the source."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self.source.close()


def crop_and_resize(
    image: np.ndarray, crop: tuple[int, int, int, int] | None, size: tuple[int, int]
) -> np.ndarray:
    """Crop rows top:bottom and columns left:right, then resize to (H, W) (box filter)."""
    if crop is not None:
        top, bottom, left, right = crop
        image = image[top:bottom, left:right]
    h, w = image.shape[:2]
    out_h, out_w = size
    if (h, w) == (out_h, out_w):
        return np.ascontiguousarray(image)
    if h == 0 or w == 0:
        raise ValueError(f"crop {crop} leaves an empty image")
    # Average over each output pixel's footprint (box filter) when shrinking; nearest when growing.
    rows = np.linspace(0, h, out_h + 1)
    cols = np.linspace(0, w, out_w + 1)
    if h >= out_h and w >= out_w:
        r_idx = np.floor(rows[:-1]).astype(int)
        c_idx = np.floor(cols[:-1]).astype(int)
        summed = np.add.reduceat(
            np.add.reduceat(image.astype(np.float32), r_idx, axis=0), c_idx, axis=1
        )
        counts = np.outer(np.diff(np.append(r_idx, h)), np.diff(np.append(c_idx, w)))
        return (summed / counts[..., None] + 0.5).astype(np.uint8)
    r = np.minimum((rows[:-1] + rows[1:]) / 2, h - 1).astype(int)
    c = np.minimum((cols[:-1] + cols[1:]) / 2, w - 1).astype(int)
    return np.ascontiguousarray(image[r][:, c])


# -- hardware sources (optional packages) ------------------------------------------------------


class RealSenseSource(FrameSource):
    """Colour stream of an Intel RealSense camera by serial number (pyrealsense2)."""

    def __init__(self, serial: str, width: int = 640, height: int = 480, fps: int = 30) -> None:
        self.serial, self.width, self.height, self.fps = serial, width, height, fps
        self._pipeline = None

    def open(self) -> None:
        """Start the camera's colour pipeline."""
        try:
            import pyrealsense2 as rs
        except ImportError as e:
            raise HardwareUnavailable("RealSense cameras need `pip install serl[robot]`") from e
        pipeline = rs.pipeline()
        config = rs.config()
        config.enable_device(self.serial)
        config.enable_stream(rs.stream.color, self.width, self.height, rs.format.rgb8, self.fps)
        pipeline.start(config)
        self._pipeline = pipeline

    def grab(self) -> np.ndarray:
        """Wait for the next colour frame (the SDK's own 1 s timeout raises on a frozen camera)."""
        if self._pipeline is None:
            raise RobotError("RealSenseSource.grab before open")
        frames = self._pipeline.wait_for_frames(1000)
        return np.asanyarray(frames.get_color_frame().get_data()).copy()

    def close(self) -> None:
        """Stop the pipeline."""
        if self._pipeline is not None:
            self._pipeline.stop()
            self._pipeline = None


class OpenCVSource(FrameSource):
    """A V4L2 / UVC camera through OpenCV (device index or path such as /dev/video0)."""

    def __init__(
        self, device: int | str = 0, width: int = 640, height: int = 480, fps: int = 30
    ) -> None:
        self.device, self.width, self.height, self.fps = device, width, height, fps
        self._cap = None

    def open(self) -> None:
        """Open the device with the V4L2 backend."""
        try:
            import cv2
        except ImportError as e:
            raise HardwareUnavailable("OpenCV cameras need `pip install opencv-python`") from e
        cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not cap.isOpened():
            raise RobotError(f"cannot open camera {self.device!r}")
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        cap.set(cv2.CAP_PROP_FPS, self.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # no queue of stale frames in the driver
        self._cap = cap

    def grab(self) -> np.ndarray:
        """Read the next frame, BGR -> RGB."""
        if self._cap is None:
            raise RobotError("OpenCVSource.grab before open")
        ok, frame = self._cap.read()
        if not ok:
            raise RobotError(f"camera {self.device!r} returned no frame")
        return np.ascontiguousarray(frame[..., ::-1])

    def close(self) -> None:
        """Release the device."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None
