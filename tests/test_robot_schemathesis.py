"""Schemathesis tests the robot server's OpenAPI with every check (`schemathesis run --checks all`).

Each operation is a test case, sent to a live server on loopback: hypothesis draws requests from
the operation's schema (and schemathesis's negative data), and the coverage phase sends its
boundary values and methods the path lacks. No 5xx, every response as the schema says, every
schema-valid request accepted and every invalid one refused: the schema is what the server applies.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, given, reject, settings
from robot_helpers import ServerThread
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig

from serl.robot.backends.sim import SimBackend
from serl.robot.server import ServerConfig, create_app

# Short waits keep fuzzing fast: moves and frame long-polls are bounded by the config.
CONFIG = ServerConfig(max_move_s=0.2, move_settle_s=0.2, max_camera_wait_s=0.1, max_recoveries=1000)
SCHEMA_BACKEND = SimBackend(scene="empty", cameras=())
JOINT_LIMITS = SCHEMA_BACKEND.joint_limits
OPENAPI = create_app(SCHEMA_BACKEND, CONFIG).openapi()
SCHEMA = schemathesis.openapi.from_dict(OPENAPI)
# The CLI's coverage phase on its own: values at and just past each bound, methods a path lacks.
COVERAGE_ONLY = {"phases": {"enabled": False, "coverage": {"enabled": True}}}
COVERAGE = schemathesis.openapi.from_dict(
    OPENAPI, config=SchemathesisConfig.from_dict(COVERAGE_ONLY)
)
OPERATIONS = {op.ok().label: op.ok() for op in SCHEMA.get_all_operations()}
_SPEC = SCHEMA.raw_schema["paths"]
NO_INPUT = {
    f"{method.upper()} {path}"
    for path, item in _SPEC.items()
    for method, op in item.items()
    if not op.get("parameters") and "requestBody" not in op
}
load_all_checks()


def valid_body_only(label: str, body: object) -> bool:
    """Whether an operation taking a JSON body alone got one its whole schema accepts:
    schemathesis's negative data for a oneOf breaks one branch and can land in another
    (e.g. {"action": "close"} from GripperMove's "move"), which is not invalid data."""
    method, path = label.split(" ", 1)
    op = _SPEC[path][method.lower()]
    if op.get("parameters") or "requestBody" not in op or not isinstance(body, dict):
        return False
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    root = {**schema, "components": OPENAPI["components"]}  # for its $refs
    return jsonschema_rs.validator_for(root).is_valid(body)


ALL_CHECKS = list(CHECKS.get_all())  # `--checks all`: positive data acceptance included


@pytest.fixture(scope="module")
def live_server() -> Iterator[ServerThread]:
    backend = SimBackend(scene="empty", camera_size=(32, 32), camera_fps=20.0)
    srv = ServerThread(create_app(backend, CONFIG)).start()
    yield srv
    srv.stop()


def test_every_operation_is_fuzzed() -> None:
    assert {
        "POST /command",
        "POST /move",
        "PUT /params",
        "POST /recover",
        "GET /cameras/{name}",
        "POST /sim/fault",
    } <= set(OPERATIONS)


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=str)
@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_operation_never_errors_and_matches_its_schema(
    label: str, mode: schemathesis.GenerationMode, live_server: ServerThread
) -> None:
    # positive: schema-valid requests, which must all be accepted (or meet a fault: 409, 429);
    # negative: schema-violating requests, which must all be refused with a 4xx.
    if mode == schemathesis.GenerationMode.NEGATIVE and label in NO_INPUT:
        pytest.skip("an operation without inputs has no invalid requests")

    @given(case=OPERATIONS[label].as_strategy(generation_mode=mode))
    @settings(
        max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def fuzz(case: schemathesis.Case) -> None:
        negative = mode == schemathesis.GenerationMode.NEGATIVE
        if negative and valid_body_only(label, case.body):
            reject()  # not a schema-violating request: nothing to refuse
        case.call_and_validate(base_url=live_server.url, checks=ALL_CHECKS, timeout=10.0)

    fuzz()


@COVERAGE.parametrize()
@settings(deadline=None, database=None)
def test_operation_boundaries_and_undeclared_methods(
    case: schemathesis.Case, live_server: ServerThread
) -> None:
    # Bounds exactly (accepted) and just beyond (refused), missing fields, methods the path lacks.
    case.call_and_validate(base_url=live_server.url, checks=ALL_CHECKS, timeout=10.0)


def test_a_refused_method_is_answered_with_every_method_of_the_path(
    live_server: ServerThread,
) -> None:
    for method in ("OPTIONS", "PATCH"):
        r = httpx.request(method, f"{live_server.url}/params", timeout=5.0)
        assert r.status_code == 405 and r.headers["allow"] == "GET, PUT", method


def test_refusals_name_the_bounds(live_server: ServerThread) -> None:
    def refusal(path: str, body: dict[str, object]) -> str:
        r = httpx.post(f"{live_server.url}{path}", json=body, timeout=5.0)
        assert r.status_code == 422, r.text
        return r.json()["detail"][0]["msg"]

    low, high = list(CONFIG.workspace_low), list(CONFIG.workspace_high)
    msg = refusal("/command", {"pose": {"position": [5.0, 0.0, 0.3], "quaternion": [1, 0, 0, 0]}})
    assert f"outside the workspace {low}..{high}" in msg
    q_low, q_high = JOINT_LIMITS[:, 0].tolist(), JOINT_LIMITS[:, 1].tolist()
    msg = refusal("/joint_reset", {"q": [4.0] * 7})
    assert f"outside the joint limits {q_low}..{q_high}" in msg
    msg = refusal("/move", {"pose": {"position": [0.5, 0.0, 0.3], "quaternion": [0, 0, 0.1, 0]}})
    assert "not unit length" in msg
