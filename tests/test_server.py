"""The server in process (FastAPI's TestClient) on a scripted backend: protocol, errors, limits, metrics."""

from __future__ import annotations

import json

import pytest
from conftest import GatedReasoner, OpenAIHandler, ScriptedReasoner, SlowReasoner, wait_for
from fastapi.testclient import TestClient
from server_utils import app_with

from rsim_graph import RuntimeConfig, load_runtime
from server.app import create_app
from server.settings import ServerSettings

Q = [{"role": "user", "content": "What is 2+3?"}]


@pytest.fixture
def reasoner():
    return ScriptedReasoner(answer="5", texts={"understand": "Known: 2 and 3.", "deep-think": "2+3 = 5"})


@pytest.fixture
def client(reasoner):
    with TestClient(app_with(reasoner)) as c:
        yield c


def chat(client, **body):
    return client.post("/v1/chat/completions", json={"model": "rsim", "messages": Q, **body})


def sse(response) -> list:
    events = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_completion_has_content_trace_and_usage(client):
    r = chat(client)
    assert r.status_code == 200
    body = r.json()
    msg = body["choices"][0]["message"]
    assert msg["content"] == "Known: 2 and 3.\n\n2+3 = 5\n\n\\boxed{5}"
    assert [s["strategy"] for s in msg["rsim"]["steps"]] == ["understand", "deep-think", "terminate"]
    assert msg["rsim"]["answer"] == "5" and msg["rsim"]["stop_reason"] == "terminate"
    assert body["choices"][0]["finish_reason"] == "stop"
    # ScriptedReasoner: 3 question ids, 1 injected id and 5 generated ids per step.
    assert body["usage"] == {"prompt_tokens": 3 + 3, "completion_tokens": 15, "total_tokens": 21}
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")


def test_stream_chunks_follow_openai_order(client):
    r = chat(client, stream=True, stream_options={"include_usage": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    chunks = sse(r)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0]["delta"] for c in chunks[1:-2]]
    assert "".join(d["content"] for d in deltas) == "Known: 2 and 3.\n\n2+3 = 5\n\n\\boxed{5}"
    assert [d["rsim"]["strategy"] for d in deltas] == ["understand", "deep-think", "terminate"]
    finish = chunks[-2]["choices"][0]
    assert finish["finish_reason"] == "stop" and finish["delta"]["rsim"] == {"answer": "5", "stop_reason": "terminate"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 15
    assert len({c["id"] for c in chunks}) == 1


def test_n_choices_and_seeds(client, reasoner):
    r = chat(client, n=3, seed=7, temperature=0.5, top_p=0.9)
    assert [c["index"] for c in r.json()["choices"]] == [0, 1, 2]
    seeds = sorted({(q.seed, q.temperature, q.top_p) for q in reasoner.requests})
    assert seeds == [(7, 0.5, 0.9), (8, 0.5, 0.9), (9, 0.5, 0.9)]


def test_history_reaches_the_reasoner(client, reasoner):
    messages = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"}, {"role": "user", "content": [{"type": "text", "text": "2+3?"}]}]
    assert client.post("/v1/chat/completions", json={"model": "rsim", "messages": messages}).status_code == 200
    req = reasoner.requests[0]
    assert req.question == "2+3?"
    assert req.history == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


def test_injection_can_be_switched_off(client, reasoner):
    msg = chat(client, strategy_injection=False).json()["choices"][0]["message"]
    assert msg["content"] == "plain \\boxed{5}" and msg["rsim"]["strategy_injection"] is False
    assert [s["strategy"] for s in msg["rsim"]["steps"]] == [""]
    assert reasoner.requests[0].injected == ""  # the reasoner alone: complete(), nothing injected


def test_stop_sequence_cuts_content_and_ends_the_run(client, reasoner):
    choice = chat(client, stop=["= 5"]).json()["choices"][0]
    assert choice["message"]["content"] == "Known: 2 and 3.\n\n2+3 "
    assert choice["finish_reason"] == "stop" and choice["message"]["rsim"]["stop_reason"] == "stop_sequence"
    assert len(reasoner.requests) == 2  # the terminating step never ran
    assert [st["text"] for st in choice["message"]["rsim"]["steps"]] == ["Known: 2 and 3.", "2+3 "]  # nothing past the stop


@pytest.mark.parametrize("stream", [False, True])
def test_a_step_cut_to_nothing_by_a_stop_leaves_no_trace_and_no_empty_delta(client, stream):
    r = chat(client, stop=["\n\n2+3"], stream=stream)  # the stop starts at the second step's delimiter
    if stream:
        deltas = [c["choices"][0]["delta"] for c in sse(r)[1:-1]]
        assert [d["content"] for d in deltas if "content" in d] == ["Known: 2 and 3."]
    else:
        msg = r.json()["choices"][0]["message"]
        assert msg["content"] == "Known: 2 and 3." and [st["strategy"] for st in msg["rsim"]["steps"]] == ["understand"]


def test_max_tokens_is_a_cap(client, reasoner):
    choice = chat(client, max_tokens=1).json()["choices"][0]
    assert choice["finish_reason"] == "length" and choice["message"]["rsim"]["stop_reason"] == "max_total_tokens"
    assert [(r.strategy, r.max_new_tokens) for r in reasoner.requests] == [("terminate", 1)]


@pytest.mark.parametrize("stream", [False, True])
def test_a_whole_answer_is_stop_whatever_rule_ended_the_run(client, stream):
    # max_steps forced the answer; it is whole, so clients must not read it as truncated. The rule stays in rsim.
    r = chat(client, max_steps=2, stream=stream)
    if stream:
        finish = sse(r)[-1]["choices"][0]
        assert finish["finish_reason"] == "stop" and finish["delta"]["rsim"]["stop_reason"] == "max_steps"
    else:
        choice = r.json()["choices"][0]
        assert choice["finish_reason"] == "stop" and choice["message"]["rsim"]["stop_reason"] == "max_steps"
        assert [s["forced"] for s in choice["message"]["rsim"]["steps"]] == [False, True]


def test_the_repeat_rule_with_a_whole_answer_is_stop():
    looping = ScriptedReasoner(answer="5", texts={"understand": "2+3 = 5", "deep-think": "2+3 = 5"})
    with TestClient(app_with(looping)) as c:
        choice = chat(c).json()["choices"][0]
    assert choice["message"]["rsim"]["stop_reason"] == "repeat" and choice["finish_reason"] == "stop"


@pytest.mark.parametrize("stream", [False, True])
def test_usage_counts_the_steps_written_before_a_stop_sequence(client, stream):
    r = chat(client, stop=["= 5"], stream=stream, **({"stream_options": {"include_usage": True}} if stream else {}))
    usage = sse(r)[-1]["usage"] if stream else r.json()["usage"]
    # two steps ran (5 written ids each, 1 injected id each) over the 3-id question
    assert usage == {"prompt_tokens": 3 + 2, "completion_tokens": 10, "total_tokens": 15}


def test_the_prompt_is_counted_once_for_n_choices(client):
    usage = chat(client, n=2).json()["usage"]
    # the 3-id question once, each choice's 3 injected ids; each choice wrote 3 steps of 5
    assert usage == {"prompt_tokens": 3 + 2 * 3, "completion_tokens": 2 * 15, "total_tokens": 39}


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"messages": []}, "messages", "at least 1"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages", "role"),
        ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}, "messages", "last message must be from the user"),
        ({"messages": [{"role": "user", "content": "  "}]}, "messages", "empty"),
        ({"temperature": 3}, "temperature", "less than or equal to 2"),
        ({"n": "two"}, "n", "integer"),
        ({"n": 9}, "n", "cap of 8"),
        ({"max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
        ({"max_tokens": 4096}, "max_tokens", "cap of 2048"),
        ({"max_steps": 50}, "max_steps", "cap of 12"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "up to 4"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages", "text"),
        # OpenAI's strict types: no coercion of floats, strings or booleans
        ({"n": 3.0}, "n", "valid integer"),
        ({"stream": "yes"}, "stream", "valid boolean"),
        ({"max_tokens": True}, "max_tokens", "valid integer"),
        ({"stream_options": {"include_usage": True}}, "stream_options", "only allowed when stream is true"),
        # invalid Unicode (a lone surrogate) is the client's mistake, not a tokenizer crash
        ({"messages": [{"role": "user", "content": "What is 2+3?\ud800"}]}, "messages", "invalid Unicode"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "\udc00"}]}]}, "messages", "invalid Unicode"),
        ({"stop": ["\ud83d"]}, "stop", "invalid Unicode"),
        # fields this server cannot honour are refused, never silently ignored
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools", "tool calling is not supported"),
        ({"tool_choice": "required"}, "tool_choice", "tool calling is not supported"),
        ({"functions": [{"name": "f"}]}, "functions", "function calling is not supported"),
        ({"response_format": {"type": "json_object"}}, "response_format", "structured output is not supported"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, "response_format", "parse choices[0].message.rsim.answer"),
        ({"logprobs": True}, "logprobs", "not returned"),
        ({"top_logprobs": 3}, "top_logprobs", "not returned"),
    ],
)
def test_client_mistakes_are_400_with_openai_errors(client, body, param, words):
    # json.dumps escapes lone surrogates as \\ud800, as a client's JSON would carry them
    raw = json.dumps({"model": "rsim", "messages": Q, **body})
    r = client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param and words in err["message"]
    assert "\n" not in err["message"]


def test_off_values_of_unsupported_fields_are_accepted(client):
    off = {"tools": [], "tool_choice": "none", "response_format": {"type": "text"}, "logprobs": False, "top_logprobs": 0}
    assert chat(client, **off).status_code == 200


def test_a_model_is_retrieved_by_id(client):
    card = client.get("/v1/models/rsim")
    assert card.status_code == 200 and card.json()["id"] == "rsim" and card.json()["object"] == "model"
    missing = client.get("/v1/models/gpt-9")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_invalid_json_and_wrong_shape_are_400(client):
    r = client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = client.post("/v1/chat/completions", json=[1, 2])
    assert r.status_code == 400


def test_unknown_model_is_404(client):
    r = client.post("/v1/chat/completions", json={"model": "gpt-9", "messages": Q})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert client.get("/v1/nowhere").status_code == 404


def test_api_keys(reasoner):
    with TestClient(app_with(reasoner, api_key=["k1", "k2"])) as c:
        assert chat(c).status_code == 401
        assert c.post("/v1/chat/completions", json={"model": "rsim", "messages": Q}, headers={"Authorization": "Bearer nope"}).status_code == 401
        ok = c.post("/v1/chat/completions", json={"model": "rsim", "messages": Q}, headers={"Authorization": "Bearer k2"})
        assert ok.status_code == 200
        assert c.get("/v1/models").status_code == 401
        assert c.get("/health").status_code == 200  # stays open for probes
        assert c.get("/v1/models", headers={"Authorization": "Bearer k1"}).json()["data"][0]["id"] == "rsim"


def test_oversized_bodies_are_413(reasoner):
    with TestClient(app_with(reasoner, max_body_bytes=2048)) as c:
        big = [{"role": "user", "content": "x" * 5000}]
        r = c.post("/v1/chat/completions", json={"model": "rsim", "messages": big})
        assert r.status_code == 413 and "2048" in r.json()["error"]["message"]

        def chunks():  # no Content-Length: counted while it streams in
            yield b'{"model": "rsim", "messages": [{"role": "user", "content": "'
            yield b"x" * 5000
            yield b'"}]}'

        assert c.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"}).status_code == 413


@pytest.mark.parametrize("stream", [False, True])
def test_full_queue_is_429_before_any_stream_starts(stream):
    import threading

    gated = GatedReasoner()
    with TestClient(app_with(gated, max_concurrent_requests=1, max_queue=0)) as c:
        first = threading.Thread(target=lambda: chat(c))
        first.start()
        assert gated.entered.wait(10)  # the first request holds the only slot
        r = chat(c, stream=stream)
        gated.release.set()
        first.join()
        assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
        assert r.json()["error"]["code"] == "queue_full" and r.headers["retry-after"] == "2"  # what the SDKs wait before retrying


def test_slow_requests_504():
    slow = SlowReasoner(delay=0.2)
    with TestClient(app_with(slow, plan=["deep-think"] * 10, request_timeout=0.3)) as c:
        r = chat(c)
        assert r.status_code == 504 and r.json()["error"]["type"] == "timeout_error"
        wait_for(lambda: slow.released, what="the timed-out run's release")  # it has left the graph: no step follows
        assert len(slow.requests) < 6  # the timed-out run stopped instead of finishing unseen


def test_health_is_503_while_loading_or_after_a_failed_load(tmp_path):
    app = create_app(ServerSettings(planner=str(tmp_path / "missing")))
    with TestClient(app) as c:
        import time

        for _ in range(600):  # the load runs on a worker thread; it fails on the missing planner
            if app.state.status.status != "loading":
                break
            time.sleep(0.05)
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "failed" and "missing" in r.json()["detail"]
        assert chat(c).status_code == 503


def test_metrics_count_requests_and_strategies(client):
    chat(client)
    text = client.get("/metrics").text
    assert 'rsim_strategy_total{strategy="understand"} 1.0' in text
    assert 'rsim_strategy_total{strategy="terminate"} 1.0' in text
    assert "http_requests_total" in text and "http_request_duration_seconds" in text


def test_models_lists_the_served_name(reasoner):
    with TestClient(app_with(reasoner, model_name="rsim-arith")) as c:
        assert [m["id"] for m in c.get("/v1/models").json()["data"]] == ["rsim-arith"]
        assert c.post("/v1/chat/completions", json={"model": "rsim-arith", "messages": Q}).status_code == 200


def test_a_failing_backend_is_503_and_health_recovers():
    from rsim_graph.errors import ReasonerError

    class Flaky(ScriptedReasoner):
        down = True

        def step(self, request):
            if self.down:
                raise ReasonerError("cannot reach the reasoner's server (ConnectError); check --reasoner_base_url")
            return super().step(request)

    flaky = Flaky(answer="5")
    with TestClient(app_with(flaky)) as c:
        r = chat(c)
        assert r.status_code == 503 and "cannot reach" in r.json()["error"]["message"]
        health = c.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "failed"
        flaky.down = False
        assert chat(c).status_code == 200
        assert c.get("/health").status_code == 200


def test_a_question_of_only_reserved_text_is_400_even_when_streaming(client):
    from rsim_graph.strategies import StrategyLibrary

    forged = [{"role": "user", "content": StrategyLibrary.default().render("terminate")}]
    for stream in (False, True):
        r = client.post("/v1/chat/completions", json={"model": "rsim", "messages": forged, "stream": stream})
        assert r.status_code == 400 and "nothing but strategy prompts or control tokens" in r.json()["error"]["message"]


class BrokenReasoner(ScriptedReasoner):
    def step(self, request):
        raise RuntimeError("a bug in the backend")


@pytest.mark.parametrize("stream", [False, True])
def test_an_internal_error_is_a_500_whose_traceback_is_logged(stream, caplog):
    with TestClient(app_with(BrokenReasoner())) as c, caplog.at_level("ERROR", logger="server.routes"):
        r = chat(c, stream=stream)
    error = sse(r)[-1]["error"] if stream else r.json()["error"]
    assert (r.status_code, error["type"]) == (200 if stream else 500, "server_error")
    assert error["message"] == "internal error (RuntimeError); see the server log"
    logged = [rec for rec in caplog.records if rec.name == "server.routes" and rec.exc_info]
    assert len(logged) == 1 and "a bug in the backend" in str(logged[0].exc_info[1])


@pytest.mark.parametrize("stream", [False, True])
def test_timeouts_leave_no_unretrieved_or_pending_tasks(stream, caplog):
    """A timed-out request's cancelled runs are retrieved: asyncio logged one ERROR traceback per timeout."""
    import gc
    import time

    slow = SlowReasoner(delay=0.2)
    with caplog.at_level("ERROR"), TestClient(app_with(slow, plan=["deep-think"] * 10, request_timeout=0.3)) as c:
        for _ in range(3):
            r = chat(c, stream=stream)
            assert (r.status_code if not stream else sse(r)[-1]["error"]["type"]) in (504, "timeout_error")
        for _ in range(10):  # the cancelled tasks finish on the server's loop; collect what they left
            gc.collect()
            time.sleep(0.05)
    noise = [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage() or "destroyed but it is pending" in r.getMessage()]
    assert noise == []


@pytest.mark.parametrize("public_metrics", [False, True])
def test_metrics_and_docs_are_behind_the_key(public_metrics):
    with TestClient(app_with(ScriptedReasoner(), api_key=["k1"], public_metrics=public_metrics)) as c:
        key = {"Authorization": "Bearer k1"}
        for path in ("/openapi.json", "/docs"):
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers=key).status_code == 200, path
        assert "/v1/chat/completions" in c.get("/openapi.json", headers=key).json()["paths"]
        assert c.get("/metrics").status_code == (200 if public_metrics else 401)
        assert c.get("/metrics", headers=key).status_code == 200
        assert c.get("/health").status_code == 200  # for orchestrators: always open


@pytest.mark.parametrize("stream", [False, True])
def test_over_length_prompts_are_400_context_length_exceeded(hf_reasoner, stream):
    """The tiny model reads 1,024 positions (a character tokenizer: one token a character)."""
    with TestClient(app_with(hf_reasoner, max_step_tokens=8, max_total_tokens=512)) as c:
        long = [{"role": "user", "content": "1+2 " * 400}]  # 1,600 characters
        r = c.post("/v1/chat/completions", json={"model": "rsim", "messages": long, "stream": stream})
        assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
        assert "context window of 1024 tokens" in r.json()["error"]["message"]
        fits = [{"role": "user", "content": "1+2 " * 200}]  # 800: fits with 8 tokens a step, not with 300 more
        assert c.post("/v1/chat/completions", json={"model": "rsim", "messages": fits, "max_tokens": 8}).status_code == 200
        r = c.post("/v1/chat/completions", json={"model": "rsim", "messages": fits, "max_tokens": 300, "stream": stream})
        assert r.status_code == 400 and "lower max_tokens" in r.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_refusal_is_a_502_with_its_own_message_and_health_says_so(openai_server, stream):
    OpenAIHandler.refuse = (404, "The model `nope` does not exist.")
    config = RuntimeConfig(reasoner_base_url=openai_server, reasoner_model="nope", planner="heuristic", max_retries=0)
    with TestClient(create_app(ServerSettings(), backend=load_runtime(config))) as c:
        r = chat(c, stream=stream)
        error = sse(r)[-1]["error"] if stream else r.json()["error"]
        assert stream or r.status_code == 502
        assert error["message"] == "the reasoner's server refused the request (404): The model `nope` does not exist."
        assert (error["type"], error["code"]) == ("upstream_error", "404")
        health = c.get("/health")
        assert health.status_code == 503 and "does not exist" in health.json()["detail"]
        OpenAIHandler.refuse = None  # the upstream recovers: so do the next request and /health
        assert chat(c).status_code == 200 and c.get("/health").status_code == 200


def test_null_n_and_stream_ask_for_the_defaults(client):
    # Nullable in OpenAI's spec (the SDKs send them when a caller passes None through).
    r = chat(client, n=None, stream=None)
    assert r.status_code == 200 and len(r.json()["choices"]) == 1 and r.json()["object"] == "chat.completion"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"model": "rsim", "messages": [{"role": "user", "content": "\xff\xfe 2+3"}]}', "the body is not valid UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "the body's JSON is nested too deeply to parse; send a flatter JSON object"),
    ],
)
def test_undecodable_bodies_say_what_is_wrong(client, body, message):
    r = client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith(message)


def test_every_documented_route_describes_itself(client):
    # /docs shows the OpenAPI description: a route without a docstring describes nothing there.
    paths = client.get("/openapi.json").json()["paths"]
    operations = [(path, verb, op) for path, ops in paths.items() for verb, op in ops.items()]
    assert len(operations) == 4
    assert all(len(op.get("description", "")) > 20 for _, _, op in operations), [(p, v) for p, v, op in operations if not op.get("description")]


@pytest.mark.parametrize("body", [{}, {"n": 2, "seed": 3}, {"max_tokens": 6}, {"stop": ["2+3"]}, {"logprobs": False}])
def test_every_reply_validates_against_the_openai_packages_own_types(client, body):
    """The server's response models are ours (they carry the `rsim` trace); the `openai` package's types are the
    contract its clients parse, so every reply shape is validated against them."""
    from openai.types import Model
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    reply = ChatCompletion.model_validate(chat(client, **body).json())
    assert reply.object == "chat.completion" and reply.choices[0].message.role == "assistant"
    assert reply.usage is not None and reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.choices[0].finish_reason in ("stop", "length")
    chunks = [ChatCompletionChunk.model_validate(c) for c in sse(chat(client, stream=True, stream_options={"include_usage": True}, **body))]
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert {c.choices[0].finish_reason for c in chunks[:-1] if c.choices[0].finish_reason} <= {"stop", "length"}
    listed = client.get("/v1/models").json()
    assert listed["object"] == "list" and [Model.model_validate(m).id for m in listed["data"]] == ["rsim"]
    assert Model.model_validate(client.get("/v1/models/rsim").json()).owned_by
