"""The robot server: an HTTP API (FastAPI, OpenAPI at /openapi.json) over one arm backend.

One call per control step: `POST /command` validates a pose target (and optional gripper
closure), applies it, optionally waits `settle_s` without blocking other requests, and answers
the state. The server owns the safety logic no client can skip: every number must be finite,
targets must lie inside the configured workspace, a watchdog holds the arm when commands stop,
faults refuse commands until an explicit `POST /recover`, and recoveries are rate-limited so a
robot that keeps faulting waits for a person. Quaternions are [x, y, z, w] everywhere. Every
duration (settle, moves, the watchdog, the recovery window) counts the robot's clock, so a sim
backend run faster than real time keeps their meaning.

One piece (~700 lines) because the routes, the request models and the safety state they
check (watchdog, fault latch, recovery limit, one lock over the backend) are one contract: the
OpenAPI schema a client generates from is this file.
"""

import asyncio
import hmac
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import Field as DataclassField
from dataclasses import dataclass, fields
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    create_model,
)
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from serl.dataclass_json import decode_fields
from serl.robot import transforms as tf
from serl.robot.backends.base import Backend
from serl.robot.impedance import PARAM_BOUNDS, ImpedanceParams
from serl.robot.state import RobotState

log = logging.getLogger(__name__)

MOVE_TOL_M, MOVE_TOL_RAD, MOVE_TOL_M_S = 0.003, 0.03, 0.01  # "arrived" = there and at rest
MOVE_SETTLE_WALL_FACTOR = 3.0  # wall-clock cap on settling, as a multiple of move_settle_s

Closure = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
# JSON Schema cannot say "unit norm", so the schema states the loosest rule it can that keeps
# every accepted quaternion far from zero (normalising it is then safe) and lets every unit one
# through, float rounding included: each component within ±QUAT_MAX and one at least QUAT_PEAK in
# magnitude (a unit quaternion's largest is at least 0.5). Any within 1% of unit norm passes.
QUAT_MAX, QUAT_PEAK = 1.01, 0.49
BOUND_ERRORS = ("greater_than_equal", "less_than_equal")  # pydantic's error types for ge / le


@dataclass(frozen=True)
class ServerConfig:
    """What the server enforces: workspace (m, base frame), watchdog, recovery budget, token."""

    workspace_low: tuple[float, float, float] = (0.15, -0.6, 0.0)
    workspace_high: tuple[float, float, float] = (0.85, 0.6, 0.8)
    watchdog_s: float = 0.5
    max_recoveries: int = 3
    recovery_window_s: float = 60.0
    # longest timed move accepted: resets take 1-1.5 s, and with the settle budget a move then
    # answers within ~8 s of robot time, inside the usual 10 s client timeout
    max_move_s: float = 5.0
    move_settle_s: float = 3.0  # longest a move waits (robot clock) for the arm to arrive
    max_camera_wait_s: float = 5.0  # longest a frame request long-polls
    token: str | None = None

    def __post_init__(self) -> None:
        low, high = np.asarray(self.workspace_low), np.asarray(self.workspace_high)
        if low.shape != (3,) or high.shape != (3,) or np.any(low >= high):
            raise ValueError(f"workspace must be 3 lows below 3 highs, got {low}..{high}")
        if not self.watchdog_s > 0 or self.max_recoveries < 0 or not self.max_move_s > 0:
            raise ValueError("watchdog_s and max_move_s must be > 0 and max_recoveries >= 0")


# -- API schema ----------------------------------------------------------------------------------
class Strict(BaseModel):
    """Request models reject unknown fields and non-finite numbers."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


def _vector(low: list[float], high: list[float], message: str) -> Any:
    """Numbers [low[i], high[i]] each (prefixItems); out of bounds: one error, `message`."""
    items = tuple(Annotated[float, Field(ge=lo, le=hi)] for lo, hi in zip(low, high, strict=True))

    def explain(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError as e:  # one sentence naming the bounds, not one error per item
            if any(err["type"] not in BOUND_ERRORS for err in e.errors()):
                raise
            raise PydanticCustomError("out_of_bounds", message, {"value": value}) from None

    # Lax on the tuple alone: JSON arrays arrive as lists (the numbers in it stay strict).
    return Annotated[tuple[items], Field(strict=False), WrapValidator(explain)]


QUAT_MESSAGE = (
    "quaternion {value} is not unit length [x, y, z, w]: every component must be within "
    f"±{QUAT_MAX} and one at least {QUAT_PEAK} in magnitude (it is then normalised)"
)


def _normalised(quat: tuple[float, ...]) -> tuple[float, ...]:
    """The quaternion scaled to unit norm; refused when no component reaches QUAT_PEAK."""
    if max(abs(v) for v in quat) < QUAT_PEAK:
        raise PydanticCustomError("out_of_bounds", QUAT_MESSAGE, {"value": list(quat)})
    norm = float(np.linalg.norm(quat))
    return tuple(v / norm for v in quat)


Quaternion = Annotated[
    _vector([-QUAT_MAX] * 4, [QUAT_MAX] * 4, QUAT_MESSAGE),
    AfterValidator(_normalised),
    Field(
        description=f"[x, y, z, w], scalar LAST; send it unit: the server normalises it (and "
        f"refuses it unless one component is at least {QUAT_PEAK} in magnitude)",
        json_schema_extra={
            "contains": {"anyOf": [{"minimum": QUAT_PEAK}, {"maximum": -QUAT_PEAK}]}
        },
    ),
]


def _request_models(
    config: ServerConfig, joint_limits: np.ndarray
) -> tuple[type[Strict], type[Strict], type[Strict]]:
    """The request models bounded by this server: workspace, longest move, joint limits."""
    low, high = list(config.workspace_low), list(config.workspace_high)
    Position = _vector(
        low, high, f"position {{value}} is outside the workspace {low}..{high} (m, base frame)"
    )
    q_low, q_high = joint_limits[:, 0].tolist(), joint_limits[:, 1].tolist()
    Joints = _vector(
        q_low, q_high, f"q {{value}} is outside the joint limits {q_low}..{q_high} (rad)"
    )

    class Pose(Strict):
        """TCP pose in the robot base frame: position (m) inside the workspace, quaternion."""

        position: Position
        quaternion: Quaternion

        def arrays(self) -> tuple[np.ndarray, np.ndarray]:
            """Position and (unit) quaternion as float arrays."""
            return np.asarray(self.position), np.asarray(self.quaternion)

    class CommandRequest(Strict):
        """One control step: a pose target, an optional gripper closure, an optional wait."""

        pose: Pose
        gripper: Closure | None = Field(None, description="0 open .. 1 closed; null = unchanged")
        settle_s: float = Field(
            0.0,
            ge=0.0,
            le=1.0,
            allow_inf_nan=False,
            description="wait this long after applying, then answer the state",
        )

    class MoveRequest(Strict):
        """A timed min-jerk move of the reference to a pose; answers when it has arrived."""

        pose: Pose
        duration_s: float = Field(
            min(1.0, config.max_move_s), ge=0.0, le=config.max_move_s, allow_inf_nan=False
        )

    class JointResetRequest(Strict):
        """Joint configuration to move to (rad); null = the backend's home configuration."""

        q: Joints | None = None

    return CommandRequest, MoveRequest, JointResetRequest


class GripperAction(Strict):
    """Open, close, or home (calibrate) the gripper."""

    action: Literal["open", "close", "homing"]
    closure: Closure | None = Field(None, description="ignored: only action 'move' takes one")


class GripperMove(Strict):
    """Move the gripper to a closure."""

    action: Literal["move"]
    closure: Closure = Field(description="0 open .. 1 closed")


GripperRequest = Annotated[
    GripperAction | GripperMove, Field(discriminator="action", title="GripperRequest")
]


def _param_type(f: DataclassField) -> Any:
    """An impedance parameter's type, bounded by its PARAM_BOUNDS range (per axis for clips)."""
    lo, hi = PARAM_BOUNDS[f.name.removesuffix("_neg")]
    if isinstance(f.default, tuple):
        n, message = len(f.default), f"{f.name} {{value}} must be within [{lo}, {hi}] per axis"
        return _vector([lo] * n, [hi] * n, message)
    return Annotated[float, Field(ge=lo, le=hi)]


ParamsUpdate = create_model(
    "ParamsUpdate",
    __base__=Strict,
    __doc__="Impedance parameters to change, each within its safe range; omitted ones are kept.",
    **{f.name: (_param_type(f) | None, None) for f in fields(ImpedanceParams)},
)


class Params(BaseModel):
    """Impedance parameters in force."""

    translational_stiffness: float
    translational_damping: float
    rotational_stiffness: float
    rotational_damping: float
    nullspace_stiffness: float
    translational_clip: list[float]
    translational_clip_neg: list[float]
    rotational_clip: list[float]
    rotational_clip_neg: list[float]


class FaultRequest(Strict):
    """A fault to inject (sim backend only, for drills)."""

    kind: Literal["cartesian_reflex", "joint_limit", "communication_lost", "persistent"]


class GripperStateModel(BaseModel):
    """Gripper reading."""

    closure: float = Field(description="0 open .. 1 closed")
    width: float = Field(description="finger opening (m)")
    grasped: bool


class StateModel(BaseModel):
    """Everything about the robot in one response. Base frame; quaternion [x, y, z, w]."""

    position: list[float] = Field(description="TCP position (m)")
    quaternion: list[float] = Field(description="TCP orientation, unit, scalar LAST [x, y, z, w]")
    velocity: list[float] = Field(description="TCP twist [vx, vy, vz, wx, wy, wz]")
    wrench: list[float] = Field(description="external wrench at the TCP [fx, fy, fz, tx, ty, tz]")
    q: list[float]
    dq: list[float]
    gripper: GripperStateModel
    faults: list[str]
    watchdog_tripped: bool
    mode: str
    time: float
    seq: int


class RecoverResponse(BaseModel):
    """Outcome of an explicit recovery."""

    recovered: bool
    recoveries_left: int
    state: StateModel


class Health(BaseModel):
    """Liveness and what the server is."""

    ok: bool
    backend: str
    cameras: list[str]
    auth: bool
    time_scale: float = Field(description="robot seconds per wall second (a sim may run faster)")


class CameraList(BaseModel):
    """Names of the cameras the server serves."""

    cameras: list[str]


class ErrorBody(BaseModel):
    """Every non-validation error: a machine-readable code and a sentence for people."""

    error: str
    detail: str


class ApiError(Exception):
    """Raised inside handlers; becomes an ErrorBody response."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


ERRORS = {
    400: {"model": ErrorBody, "description": "the body is not JSON"},
    401: {"model": ErrorBody, "description": "missing or wrong bearer token"},
    409: {"model": ErrorBody, "description": "the robot is faulted: POST /recover first"},
}
BODY_ERRORS = {400: ERRORS[400], 401: ERRORS[401]}


def _arrived(state: RobotState, pos: np.ndarray, quat: np.ndarray) -> bool:
    """Whether the arm is at rest within the arrival tolerance of a target."""
    return bool(
        np.linalg.norm(state.position - pos) < MOVE_TOL_M
        and tf.angle_between(state.quaternion, quat) < MOVE_TOL_RAD
        and np.linalg.norm(state.velocity[:3]) < MOVE_TOL_M_S
    )


def _invalid(loc: tuple[str | int, ...], msg: str) -> RequestValidationError:
    """A 422 in FastAPI's own validation-error shape, for checks pydantic cannot express."""
    return RequestValidationError(
        [{"loc": ("body", *loc), "msg": msg, "type": "value_error", "input": None}]
    )


def _allowed_methods(request: Request) -> str:
    """The methods of every route at the request's path, for a 405's Allow header."""
    at_path = [r for r in request.app.routes if r.matches(request.scope)[0] is not Match.NONE]
    return ", ".join(sorted({m for r in at_path for m in getattr(r, "methods", None) or ()}))


# -- the service: safety logic independent of the web framework ----------------------------------
class RobotService:
    """Watchdog, fault gating and recovery budget around one backend (the models validate)."""

    def __init__(self, backend: Backend, config: ServerConfig) -> None:
        self.backend = backend
        self.config = config
        self._lock = threading.Lock()
        self._seq = 0
        self._last_command = backend.now()
        self._armed = False  # the watchdog only acts after a command, until it has held once
        self.watchdog_tripped = False
        self._recoveries: deque[float] = deque()
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="watchdog", daemon=True)

    def start(self) -> None:
        """Start the backend and the watchdog."""
        self.backend.start()
        self._watchdog.start()

    def close(self) -> None:
        """Stop the watchdog and the backend."""
        self._stop.set()
        if self._watchdog.is_alive():
            self._watchdog.join(timeout=2.0)
        self.backend.close()

    def _watch(self) -> None:
        period = min(0.02, self.config.watchdog_s / 5) / self.backend.time_scale  # wall s
        while not self._stop.wait(period):
            with self._lock:  # decide and hold atomically: a command can't slip in between
                idle = self.backend.now() - self._last_command
                due = self._armed and idle > self.config.watchdog_s
                if due:
                    self._armed = False
                    self.watchdog_tripped = True
                    self.backend.hold()
            if due:
                log.warning("no command for %.2f s: holding position", self.config.watchdog_s)

    @contextmanager
    def commanding(self, arm: bool = True) -> Iterator[None]:
        """Issue a command with the watchdog held off, then restart it (see `touch`)."""
        with self._lock:
            yield
            self._touch_locked(arm)

    def touch(self, arm: bool = True) -> None:
        """A command arrived: restart the watchdog (arm=False: nothing to guard until the next)."""
        with self._lock:
            self._touch_locked(arm)

    def _touch_locked(self, arm: bool) -> None:
        self._last_command = self.backend.now()
        self._armed = arm
        self.watchdog_tripped = False

    def state(self) -> dict[str, object]:
        """The backend's state plus the server's own flags, as the JSON body."""
        s = self.backend.state()
        with self._lock:
            self._seq += 1
            body = s.to_json()
            body["seq"] = self._seq
            body["watchdog_tripped"] = self.watchdog_tripped
        return body

    def require_no_fault(self) -> None:
        """409 while the robot is faulted."""
        faults = self.backend.faults()
        if faults:
            raise ApiError(
                409, "robot_fault", f"robot is faulted ({', '.join(faults)}); POST /recover first"
            )

    def recover(self) -> tuple[bool, int]:
        """Bounded recovery: at most max_recoveries within recovery_window_s."""
        now = self.backend.now()
        with self._lock:
            while self._recoveries and now - self._recoveries[0] > self.config.recovery_window_s:
                self._recoveries.popleft()
            if len(self._recoveries) >= self.config.max_recoveries:
                raise ApiError(
                    429,
                    "recovery_exhausted",
                    f"{len(self._recoveries)} recoveries in the last "
                    f"{self.config.recovery_window_s:.0f} s; a person must check the robot",
                )
            self._recoveries.append(now)
            left = self.config.max_recoveries - len(self._recoveries)
        ok = self.backend.recover()
        self.touch(arm=False)
        return ok, left


def create_app(backend: Backend, config: ServerConfig | None = None) -> FastAPI:
    """The FastAPI app serving `backend`; the backend starts and stops with the app."""
    config = config or ServerConfig()
    service = RobotService(backend, config)
    CommandRequest, MoveRequest, JointResetRequest = _request_models(config, backend.joint_limits)
    bearer = HTTPBearer(auto_error=False)

    def authorize(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if config.token is None:
            return
        given = credentials.credentials if credentials else ""
        if not hmac.compare_digest(given.encode(), config.token.encode()):
            raise ApiError(401, "unauthorized", "missing or wrong bearer token")

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        service.start()
        try:
            yield
        finally:
            service.close()

    app = FastAPI(
        title="serl robot server",
        version="1",
        description=(
            "Franka arm (or its MuJoCo twin) under Cartesian impedance control. All poses are in "
            "the robot base frame; quaternions are unit and scalar-last [x, y, z, w]. Lengths in "
            "m, angles in rad, forces in N."
        ),
        lifespan=lifespan,
    )
    app.state.service = service
    # The security scheme appears in the OpenAPI (and is enforced) only when a token is set.
    auth = [Depends(authorize)] if config.token is not None else []

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes the offending input, and a NaN input then fails to encode
        # (a 500). Answer location, message and type only.
        errors = [
            {
                "loc": [str(p) if not isinstance(p, int) else p for p in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "value_error")),
            }
            for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": errors})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Framework errors (unparsable body, unknown route) in the same shape as ours.
        headers = exc.headers
        if exc.status_code == 405:  # Starlette's Allow names the first route at the path only
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        return JSONResponse(
            status_code=exc.status_code,
            headers=headers,
            content={"error": f"http_{exc.status_code}", "detail": str(exc.detail)},
        )

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            status_code=exc.status, content={"error": exc.error, "detail": exc.detail}
        )

    @app.get("/health", response_model=Health)
    async def health() -> dict[str, object]:
        """Liveness; needs no token."""
        return {
            "ok": True,
            "backend": backend.name,
            "cameras": sorted(backend.cameras),
            "auth": config.token is not None,
            "time_scale": backend.time_scale,
        }

    @app.get("/state", response_model=StateModel, dependencies=auth, responses={401: ERRORS[401]})
    async def get_state() -> dict[str, object]:
        """Pose, twist, wrench, joints, gripper, faults: everything in one call."""
        return service.state()

    @app.post("/command", response_model=StateModel, dependencies=auth, responses=ERRORS)
    async def command(req: CommandRequest) -> dict[str, object]:
        """Set the pose target (and gripper); wait settle_s; answer the state."""
        pos, quat = req.pose.arrays()
        service.require_no_fault()
        with service.commanding():
            backend.set_target(pos, quat)
            if req.gripper is not None:
                backend.gripper.command(req.gripper)
        await _sleep_until(backend.now() + req.settle_s)
        return service.state()

    @app.post("/move", response_model=StateModel, dependencies=auth, responses=ERRORS)
    async def move(req: MoveRequest) -> dict[str, object]:
        """Timed min-jerk move to a pose; answers once the reference has arrived."""
        pos, quat = req.pose.arrays()
        service.require_no_fault()
        with service.commanding(arm=False):  # a move is a standing command: no watchdog
            end = backend.move(pos, quat, req.duration_s)
        try:
            await _settle(pos, quat, end)
            return service.state()  # the arm as the move left it, before the watchdog re-arms
        finally:  # also when the client goes away mid-move: the watchdog guards again
            service.touch()

    async def _sleep_until(t: float) -> None:
        """Sleep until the robot's clock reads `t` (a loaded sim's clock runs behind the wall's:
        sleep again for what is left)."""
        while (left := t - backend.now()) > 0:
            await asyncio.sleep(max(left / backend.time_scale, 0.0005))

    async def _settle(pos: np.ndarray, quat: np.ndarray, end: float) -> None:
        """Wait for the reference to arrive, then (bounded) for the arm to be at rest there.

        The settle budget counts the robot's own clock: a simulation on a loaded machine runs
        slower than the wall clock and needs more wall time (capped, for the client's deadline).
        """
        await _sleep_until(end)
        s = backend.state()
        settle_until = s.time + config.move_settle_s
        wall_budget = MOVE_SETTLE_WALL_FACTOR * config.move_settle_s / backend.time_scale
        give_up = time.monotonic() + wall_budget
        while not _arrived(s, pos, quat) and not s.faults:
            if s.time > settle_until or time.monotonic() > give_up:
                off = float(np.linalg.norm(s.position - pos))
                log.warning("move: arm still %.1f mm from the target after settling", 1e3 * off)
                return
            await asyncio.sleep(0.01)
            s = backend.state()

    @app.post("/hold", response_model=StateModel, dependencies=auth, responses={401: ERRORS[401]})
    async def hold() -> dict[str, object]:
        """Stop where the arm is and disarm the watchdog."""
        with service.commanding(arm=False):
            backend.hold()
        return service.state()

    @app.post("/joint_reset", response_model=StateModel, dependencies=auth, responses=ERRORS)
    async def joint_reset(req: JointResetRequest) -> dict[str, object]:
        """Move the joints to q (home if omitted), then hold there."""
        q = backend.home_q if req.q is None else np.asarray(req.q, dtype=np.float64)
        service.require_no_fault()
        # Joint motions on hardware take seconds: run them off the event loop.
        await asyncio.to_thread(backend.joint_reset, q)
        service.touch(arm=False)
        return service.state()

    @app.post(
        "/recover",
        response_model=RecoverResponse,
        dependencies=auth,
        responses={
            401: ERRORS[401],
            429: {"model": ErrorBody, "description": "recovery budget used up"},
        },
    )
    async def recover() -> dict[str, object]:
        """Explicitly clear faults; refused (429) after too many recent recoveries."""
        ok, left = await asyncio.to_thread(service.recover)
        return {"recovered": ok, "recoveries_left": left, "state": service.state()}

    @app.get("/params", response_model=Params, dependencies=auth, responses={401: ERRORS[401]})
    async def get_params() -> dict[str, object]:
        """Impedance parameters in force."""
        return backend.params.to_dict()

    @app.put("/params", response_model=Params, dependencies=auth, responses=BODY_ERRORS)
    async def put_params(req: ParamsUpdate) -> dict[str, object]:
        """Change some impedance parameters; each is checked against its safe range."""
        try:
            changes = decode_fields(type(backend.params), req.model_dump(exclude_none=True))
            params = backend.params.updated(**changes)
        except ValueError as e:
            raise _invalid((), str(e)) from e
        backend.set_params(params)
        return params.to_dict()

    @app.post("/gripper", response_model=GripperStateModel, dependencies=auth, responses=ERRORS)
    async def gripper(req: GripperRequest) -> dict[str, object]:
        """Open, close, move to a closure, or home the gripper."""
        service.require_no_fault()
        if req.action == "homing":
            await asyncio.to_thread(backend.gripper.homing)
        elif req.action == "move":
            backend.gripper.command(req.closure)
        else:
            backend.gripper.command(1.0 if req.action == "close" else 0.0)
        g = backend.state().gripper
        return {"closure": g.closure, "width": g.width, "grasped": g.grasped}

    @app.get("/cameras", response_model=CameraList, dependencies=auth, responses={401: ERRORS[401]})
    async def cameras() -> dict[str, object]:
        """Names of the served cameras."""
        return {"cameras": sorted(backend.cameras)}

    @app.get(
        "/cameras/{name}",
        dependencies=auth,
        response_class=Response,
        responses={
            200: {
                "content": {"application/octet-stream": {}},
                "description": "raw RGB uint8 bytes, row-major (H, W, 3); shape in X-Shape",
            },
            401: ERRORS[401],
            404: {"model": ErrorBody, "description": "no such camera"},
            504: {"model": ErrorBody, "description": "no newer frame within wait_s"},
        },
    )
    async def camera_frame(
        name: str,
        after_seq: Annotated[int, Query(ge=0, le=2**62)] = 0,
        wait_s: Annotated[float, Query(ge=0.0, le=5.0, allow_inf_nan=False)] = 1.0,
    ) -> Response:
        """Latest frame with seq > after_seq, waiting up to wait_s for one (long poll)."""
        store = backend.cameras.get(name)
        if store is None:
            raise ApiError(404, "no_camera", f"no camera {name!r}; have {sorted(backend.cameras)}")
        # Poll on the event loop (no worker thread): frames arrive at tens of Hz.
        give_up = time.monotonic() + min(wait_s, config.max_camera_wait_s)
        frame = store.latest()
        while (frame is None or frame.seq <= after_seq) and time.monotonic() < give_up:
            await asyncio.sleep(0.002)
            frame = store.latest()
        if frame is None or frame.seq <= after_seq:
            raise ApiError(504, "no_frame", f"camera {name!r}: no frame after seq {after_seq}")
        h, w = frame.image.shape[:2]
        return Response(
            content=frame.image.tobytes(),
            media_type="application/octet-stream",
            headers={
                "X-Shape": f"{h},{w},3",
                "X-Seq": str(frame.seq),
                "X-Age": f"{time.monotonic() - frame.time:.4f}",
            },
        )

    if backend.name == "sim":

        @app.post("/sim/fault", response_model=StateModel, dependencies=auth, responses=BODY_ERRORS)
        async def inject_fault(req: FaultRequest) -> dict[str, object]:
            """Drill: put the simulated robot into a fault."""
            backend.inject_fault(req.kind)
            return service.state()

    return app


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 5000) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
