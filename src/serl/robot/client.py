"""HTTP client of the robot server: one keep-alive session, a deadline per call, typed errors."""

from __future__ import annotations

import time
from typing import Any

import httpx
import numpy as np

from serl.robot.cameras import FrameSource
from serl.robot.errors import (
    CameraTimeout,
    RecoveryExhausted,
    RobotAuthError,
    RobotConnectionError,
    RobotError,
    RobotFault,
    RobotRejected,
    RobotServerError,
    RobotTimeout,
)
from serl.robot.state import GripperState, RobotState

MOVE_MARGIN_S = 10.0  # the server may wait up to 9 s (wall) after a move for the arm to settle


def _raise_for(response: httpx.Response) -> None:
    """Map an error response onto the typed errors."""
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:200]}
    detail = body.get("detail", body) if isinstance(body, dict) else body
    code = response.status_code
    if code == 401:
        raise RobotAuthError(f"{detail} (set $SERL_ROBOT_TOKEN to the server's token)")
    if code == 409:
        raise RobotFault(str(detail))
    if code == 429:
        raise RecoveryExhausted(str(detail))
    if code in (400, 404, 422):
        raise RobotRejected(f"HTTP {code}: {detail}")
    if code == 504:
        raise RobotTimeout(str(detail))
    raise RobotServerError(f"HTTP {code}: {detail}")


def _pose(position: np.ndarray, quaternion: np.ndarray) -> dict[str, list[float]]:
    return {"position": [float(v) for v in position], "quaternion": [float(v) for v in quaternion]}


class RobotClient:
    """Talks to `serl robot-server`. Every call has a deadline of `timeout` s (or its own)."""

    def __init__(
        self, url: str, token: str | None = None, timeout: float = 0.5, connect_timeout: float = 2.0
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_keepalive_connections=2, max_connections=4),
        )

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        timeout: float | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        t = self.timeout if timeout is None else timeout
        try:
            response = self._http.request(
                method,
                path,
                json=json,
                params=params,
                timeout=httpx.Timeout(t, connect=max(t, 2.0)),
            )
        except httpx.TimeoutException as e:
            raise RobotTimeout(f"{method} {path}: no answer within {t} s") from e
        except httpx.TransportError as e:
            raise RobotConnectionError(
                f"{method} {path}: cannot reach {self.url} ({e}); is `serl robot-server` running "
                "there? ($SERL_ROBOT_URL sets the address)"
            ) from e
        _raise_for(response)
        return response

    def _state(self, response: httpx.Response) -> RobotState:
        try:
            return RobotState.from_json(response.json())
        except (ValueError, KeyError, TypeError) as e:
            raise RobotServerError(f"malformed state from {self.url}: {e}") from e

    # -- API -----------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Backend name, camera names, whether auth is on."""
        return self._call("GET", "/health").json()

    def state(self) -> RobotState:
        """The robot's full state in one call."""
        return self._state(self._call("GET", "/state"))

    def command(
        self,
        position: np.ndarray,
        quaternion: np.ndarray,
        gripper: float | None = None,
        settle_s: float = 0.0,
    ) -> RobotState:
        """Send a pose target (+ gripper closure); the server answers the state after settle_s."""
        body = {"pose": _pose(position, quaternion), "gripper": gripper, "settle_s": settle_s}
        return self._state(
            self._call("POST", "/command", json=body, timeout=self.timeout + settle_s)
        )

    def move(self, position: np.ndarray, quaternion: np.ndarray, duration_s: float) -> RobotState:
        """Timed move; returns when the arm's reference has arrived."""
        body = {"pose": _pose(position, quaternion), "duration_s": duration_s}
        return self._state(
            self._call(
                "POST", "/move", json=body, timeout=self.timeout + duration_s + MOVE_MARGIN_S
            )
        )

    def hold(self) -> RobotState:
        """Stop where the arm is."""
        return self._state(self._call("POST", "/hold"))

    def joint_reset(self, q: np.ndarray | None = None, timeout: float = 30.0) -> RobotState:
        """Move the joints to q (the server's home if None)."""
        body = {"q": None if q is None else [float(v) for v in q]}
        return self._state(self._call("POST", "/joint_reset", json=body, timeout=timeout))

    def recover(self) -> tuple[bool, int]:
        """Explicit error recovery: (recovered, recoveries left). Raises RecoveryExhausted."""
        body = self._call("POST", "/recover", timeout=max(self.timeout, 5.0)).json()
        return bool(body["recovered"]), int(body["recoveries_left"])

    def params(self) -> dict[str, Any]:
        """Impedance parameters in force."""
        return self._call("GET", "/params").json()

    def set_params(self, **params: Any) -> dict[str, Any]:
        """Change impedance parameters (see ImpedanceParams for names and ranges)."""
        body = {k: list(v) if isinstance(v, tuple | np.ndarray) else v for k, v in params.items()}
        return self._call("PUT", "/params", json=body).json()

    def gripper(self, action: str, closure: float | None = None) -> GripperState:
        """open / close / move (closure in [0, 1]) / homing."""
        timeout = 30.0 if action == "homing" else None
        body = self._call(
            "POST", "/gripper", json={"action": action, "closure": closure}, timeout=timeout
        ).json()
        return GripperState(float(body["closure"]), float(body["width"]), bool(body["grasped"]))

    def cameras(self) -> list[str]:
        """Names of the cameras the server serves."""
        return list(self._call("GET", "/cameras").json()["cameras"])

    def frame(self, name: str, after_seq: int = 0, wait_s: float = 1.0) -> tuple[np.ndarray, int]:
        """(RGB uint8 image, seq) of the newest frame with seq > after_seq."""
        response = self._call(
            "GET",
            f"/cameras/{name}",
            params={"after_seq": after_seq, "wait_s": wait_s},
            timeout=self.timeout + wait_s,
        )
        try:
            shape = tuple(int(v) for v in response.headers["X-Shape"].split(","))
            image = np.frombuffer(response.content, dtype=np.uint8).reshape(shape)
            return image, int(response.headers["X-Seq"])
        except (KeyError, ValueError) as e:
            raise RobotServerError(f"malformed frame from camera {name!r}: {e}") from e

    def inject_fault(self, kind: str) -> RobotState:
        """Sim backend only: enter a fault for drills."""
        return self._state(self._call("POST", "/sim/fault", json={"kind": kind}))

    def wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        """Poll /health until the server answers (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.health()
            except (RobotConnectionError, RobotTimeout):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def close(self) -> None:
        """Close the HTTP session."""
        self._http.close()

    def __enter__(self) -> RobotClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ServerCameraSource(FrameSource):
    """A camera served by the robot server (the sim backend's renders), read by long polling."""

    def __init__(self, url: str, name: str, token: str | None = None, timeout: float = 1.0) -> None:
        self.url, self.name, self.token, self.timeout = url, name, token, timeout
        self._client: RobotClient | None = None
        self._seq = 0

    def open(self) -> None:
        """Own HTTP session (the reader thread must not share the control loop's)."""
        self._client = RobotClient(self.url, self.token, timeout=self.timeout)
        if self.name not in self._client.cameras():
            raise RobotError(f"server at {self.url} has no camera {self.name!r}")

    def grab(self) -> np.ndarray:
        """Wait for the next frame the server renders."""
        if self._client is None:
            raise RobotError("ServerCameraSource.grab before open")
        try:
            image, self._seq = self._client.frame(self.name, self._seq, wait_s=self.timeout)
        except RobotTimeout as e:
            raise CameraTimeout(str(e)) from e
        return image

    def close(self) -> None:
        """Close the session."""
        if self._client is not None:
            self._client.close()
            self._client = None
