"""Schemathesis fuzzes the robot server's OpenAPI: no 5xx, every response matches the schema.

Each operation is a test case; hypothesis draws requests from the operation's schema (and
schemathesis's negative data) and sends them to a live server on loopback.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from robot_helpers import ServerThread
from schemathesis.checks import negative_data_rejection, not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from serl.robot.backends.sim import SimBackend
from serl.robot.server import ServerConfig, create_app

# Short waits keep fuzzing fast: moves and frame long-polls are bounded by the config.
CONFIG = ServerConfig(max_move_s=0.2, move_settle_s=0.2, max_camera_wait_s=0.1, max_recoveries=1000)
SCHEMA = schemathesis.openapi.from_dict(
    create_app(SimBackend(scene="empty", cameras=()), CONFIG).openapi()
)
OPERATIONS = {op.ok().label: op.ok() for op in SCHEMA.get_all_operations()}
_SPEC = SCHEMA.raw_schema["paths"]
NO_INPUT = {
    f"{method.upper()} {path}"
    for path, item in _SPEC.items()
    for method, op in item.items()
    if not op.get("parameters") and "requestBody" not in op
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


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
    # positive: schema-valid requests (most still fail the workspace check: 422, never 5xx);
    # negative: schema-violating requests, which must all be refused with a 4xx.
    if mode == schemathesis.GenerationMode.NEGATIVE and label in NO_INPUT:
        pytest.skip("an operation without inputs has no invalid requests")

    @given(case=OPERATIONS[label].as_strategy(generation_mode=mode))
    @settings(
        max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=live_server.url, checks=CHECKS, timeout=10.0)

    fuzz()
