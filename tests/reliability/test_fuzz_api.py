"""Schemathesis against the registry's own OpenAPI document, in-process: for every operation in
the document, generated requests (valid and invalid) sent with a regulator's key never get a 5xx,
and every answer whose status the document declares matches the schema declared for it.

The operations are read from the document when the test runs, so a new route is fuzzed without
touching this file. Examples per operation are bounded (``EXAMPLES`` for valid and for invalid
input) and derandomized, so a run is repeatable and takes well under two minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.core.failures import FailureGroup

from batterytrace.api.app import create_app
from batterytrace.services.registry import Registry
from tests import factories as f
from tests.conftest import Cast

EXAMPLES = 6
CHECKS = [not_a_server_error, response_schema_conformance]


@dataclass
class Findings:
    calls: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    no_invalid_input: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def fuzz_app(module_registry: Registry, module_cast: Cast) -> FastAPI:
    # some history, so that generated requests also meet batteries and log entries that exist
    cast = module_cast
    pack, cell = f.code(level="P"), f.code(level="C")
    for actor, event in (
        (cast.maker, f.event("manufactured", pack, 0, f.MANUFACTURED)),
        (cast.maker, f.event("manufactured", cell, 1, f.MANUFACTURED)),
        (cast.maker, f.event("assembled", pack, 2, {"children": [cell]})),
        (cast.maker, f.event("shipped", pack, 3, {"to": cast.automaker.id})),
        (cast.automaker, f.event("received", pack, 4)),
        (cast.automaker, f.event("installed", pack, 5, {"vin": f.vin()})),
    ):
        assert actor.event(event).status_code == 201
    return create_app(module_registry)


def fuzz_operation(operation: Any, mode: GenerationMode, headers: dict[str, str], found: Findings) -> None:
    label = f"{operation.label} ({mode.value})"

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    def run(case: Any) -> None:
        response = case.call(headers={**headers, **(case.headers or {})})
        found.calls += 1
        found.statuses[response.status_code] = found.statuses.get(response.status_code, 0) + 1
        case.validate_response(response, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:
        # an operation without parameters or body has no invalid input to generate
        assert mode == GenerationMode.NEGATIVE, label
        found.no_invalid_input.append(label)
    except (AssertionError, FailureGroup) as exc:  # a failed check, or several
        found.failures[label] = f"{type(exc).__name__}: {str(exc)[:3000]}"


def test_no_server_error_and_answers_match_the_schema(fuzz_app: FastAPI, module_cast: Cast) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert "POST /api/v1/events" in labels
    assert "GET /api/v1/batteries/{code}" in labels
    found = Findings()
    for operation in operations:
        for mode in GenerationMode:
            fuzz_operation(operation, mode, module_cast.regulator.headers, found)
    assert not found.failures, "\n\n".join(f"{k}\n{v}" for k, v in found.failures.items())
    assert found.calls >= len(operations) * 2, found
    assert not [s for s in found.statuses if s >= 500], found.statuses
