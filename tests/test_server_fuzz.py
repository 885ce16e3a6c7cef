"""A bounded schemathesis run against the app's OpenAPI schema, plus generated values for the fields the
schema does not list (tools, response_format, logprobs) and for text that is not valid Unicode or is
longer than the model reads: no input may produce a 5xx."""

from __future__ import annotations

import json

import pytest
import schemathesis
from conftest import ScriptedReasoner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.config import (
    GenerationConfig,
    ProjectConfig,
    ProjectsConfig,
    SchemathesisConfig,
)
from server_utils import app_with
from starlette.testclient import TestClient

KEY = {"Authorization": "Bearer fuzz-key"}
app = app_with(ScriptedReasoner(answer="5"), api_key=["fuzz-key"])
# Valid and invalid inputs both: the point is that no client mistake reaches a 5xx.
config = SchemathesisConfig(
    projects=ProjectsConfig(
        default=ProjectConfig(generation=GenerationConfig(modes=list(schemathesis.GenerationMode), max_examples=100))
    )
)
schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config, headers=KEY)
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def check(response, path: str) -> int:
    assert response.status_code < 500, f"{path} -> {response.status_code}: {response.text[:300]}"
    if response.status_code >= 400 and path != "/health":
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    return response.status_code


@pytest.mark.slow
@schema.parametrize()
@FUZZ
def test_no_input_gives_a_5xx(case):
    for headers in (KEY, None):  # past the key check, and without a key
        check(case.call(headers=headers), case.path)


@pytest.mark.slow
def test_the_fuzz_reaches_both_success_and_client_errors():
    """A fuzz run that only ever hit 401s or 400s would prove nothing: this one counts its own statuses."""
    seen: set[int] = set()
    operations = [result.ok() for result in schema.get_all_operations()]

    @given(case=st.one_of([op.as_strategy() for op in operations]))
    @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
    def run(case):
        for headers in (KEY, None):
            seen.add(check(case.call(headers=headers), case.path))

    run()
    assert {200, 400, 401} <= seen, seen


@pytest.fixture(scope="module")
def hf_app(tiny_lm, tokenizer):
    """The tiny transformers reasoner: its tokenizer is what invalid Unicode used to crash (a 500)."""
    from rsim_graph.reasoners.hf import HFReasoner

    return app_with(HFReasoner(tiny_lm, tokenizer, temperature=0.0), api_key=["fuzz-key"], max_step_tokens=2, max_total_tokens=8)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
# Any code point, and often a lone surrogate (JSON carries it as a \ud800 escape), which st.text rarely draws.
SURROGATE = st.sampled_from(["", "\ud800", "\udfff", "\ud83d"])
TEXT = st.builds(lambda a, s, b: a + s + b, st.text(max_size=20), SURROGATE, st.text(max_size=20))


@pytest.mark.slow
@FUZZ
@given(
    extra=st.fixed_dictionaries({}, optional={
        "tools": JSON, "tool_choice": JSON, "functions": JSON, "function_call": JSON,
        "response_format": JSON | st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object", "json_schema"])}),
        "logprobs": JSON, "top_logprobs": JSON, "stop": TEXT | st.lists(TEXT, max_size=5),
    }),
    content=TEXT | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}), max_size=3),
    stream=st.booleans(),
)
def test_unlisted_fields_and_any_unicode_never_give_a_5xx(hf_app, extra, content, stream):
    body = {"model": "rsim", "messages": [{"role": "user", "content": content}], "stream": stream, **extra}
    with TestClient(hf_app) as client:
        r = client.post("/v1/chat/completions", content=json.dumps(body), headers={**KEY, "content-type": "application/json"})
    check(r, "/v1/chat/completions")


@pytest.mark.slow
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(repeat=st.integers(300, 2000), stream=st.booleans())
def test_over_length_prompts_are_refused_with_a_400(tiny_lm, tokenizer, repeat, stream):
    """The tiny model reads 1,024 positions; prompts past them are the client's mistake."""
    from rsim_graph.reasoners.hf import HFReasoner

    with TestClient(app_with(HFReasoner(tiny_lm, tokenizer, temperature=0.0), max_step_tokens=8, max_total_tokens=64)) as client:
        body = {"model": "rsim", "messages": [{"role": "user", "content": "12+3 " * repeat}], "stream": stream, "max_tokens": 8}
        r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded", r.text[:300]
