"""A bounded schemathesis run against the app's OpenAPI schema: no input may produce a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from conftest import ScriptedReasoner
from hypothesis import HealthCheck, settings
from schemathesis.config import (
    GenerationConfig,
    ProjectConfig,
    ProjectsConfig,
    SchemathesisConfig,
)
from server_utils import app_with

app = app_with(ScriptedReasoner(answer="5"), api_key=["fuzz-key"])
# Valid and invalid inputs both: the point is that no client mistake reaches a 5xx.
config = SchemathesisConfig(
    projects=ProjectsConfig(
        default=ProjectConfig(generation=GenerationConfig(modes=list(schemathesis.GenerationMode), max_examples=100))
    )
)
schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
STATUSES: set[int] = set()


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_gives_a_5xx(case):
    for headers in ({"Authorization": "Bearer fuzz-key"}, None):  # past the key check, and without a key
        response = case.call(headers=headers)
        STATUSES.add(response.status_code)
        assert response.status_code < 500, f"{case.method} {case.path} -> {response.status_code}: {response.text[:300]}"
        if response.status_code >= 400 and case.path != "/health":
            error = response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}


@pytest.mark.slow
def test_the_fuzz_run_reached_both_success_and_client_errors():
    # Runs after the fuzz test in file order: a run that only ever hit 401s or 400s would prove nothing.
    assert {200, 400, 401} <= STATUSES, STATUSES
