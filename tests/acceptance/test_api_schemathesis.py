"""schemathesis against ``/api/openapi.json`` of a real ``floworch serve`` on loopback,
stateless and stateful, bounded: no 5xx, and every response matches the schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Err, Ok
from schemathesis.errors import InvalidSchema
from schemathesis.schemas import APIOperation

from .serve_support import Serve, write_project

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
HEADERS = {"X-Floworch-Request": "1"}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("schemathesis")
    manifest = write_project(root / "flows")
    serve = Serve(
        root,
        str(manifest),
        "--port",
        "0",
        "--db",
        f"sqlite:///{root / 'db.sqlite'}",
        "--log-level",
        "WARNING",
        env={"ORDERS_SECRET": "s"},
    )
    try:
        yield serve.wait_url()
    finally:
        code, err = serve.stop()
        assert code == 0, err
        assert "Traceback" not in err, err


@pytest.fixture(scope="module")
def api_schema(server: str) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(f"{server}/api/openapi.json")
    # Streams never end by themselves; they are tested in test_serve.py.
    return schema.exclude(path_regex=r".*/stream$")


def _operation(
    result: Ok[APIOperation[Any, Any, Any, Any]] | Err[InvalidSchema],
) -> APIOperation[Any, Any, Any, Any]:
    """The operation of a result that holds one (every operation of our schema is valid)."""
    assert isinstance(result, Ok), result.err()
    return result.ok()


def test_stateless(api_schema: schemathesis.BaseSchema, server: str) -> None:
    # schemathesis' own pytest plugin does not work with this pytest; drive hypothesis here.
    operations = [_operation(result) for result in api_schema.get_all_operations()]
    assert len(operations) >= 25
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=8,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(base_url=server, headers=HEADERS, checks=CHECKS)

        check()


def test_stateful(api_schema: schemathesis.BaseSchema, server: str) -> None:
    machine = api_schema.as_state_machine()

    class Workflow(machine):  # type: ignore[misc,valid-type]  # a class built at run time
        def get_call_kwargs(self, case: schemathesis.Case[Any]) -> dict[str, object]:
            return {"base_url": server, "headers": HEADERS}

        def validate_response(
            self, response: schemathesis.Response, case: schemathesis.Case[Any], **kw: object
        ) -> None:
            case.validate_response(response, checks=CHECKS)

    Workflow.run(
        settings=settings(
            max_examples=15,
            stateful_step_count=5,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
    )


def test_the_schema_is_published(api_schema: schemathesis.BaseSchema, tmp_path: Path) -> None:
    paths = set(api_schema.raw_schema["paths"])
    assert {"/api/flows", "/api/runs", "/api/runs/{runId}", "/readyz"} <= paths
