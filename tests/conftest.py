"""Shared fakes: a scripted reasoner, and a tiny random Qwen2 with the character tokenizer."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM

from rsim_graph.reasoners.base import StepOutput, StepRequest
from rsim_graph.reasoners.hf import HFReasoner
from rsim_graph.strategies import StrategyLibrary
from rsim_graph.engine.tiny_models import build_tokenizer, tiny_config


class ScriptedReasoner:
    """Writes `text_for(strategy)`; the terminating step writes a boxed answer. Records its requests."""

    def __init__(self, answer: str = "42", texts: dict[str, str] | None = None, tokens_per_step: int = 5):
        self.answer = answer
        self.texts = texts or {}
        self.tokens_per_step = tokens_per_step
        self.requests: list[StepRequest] = []
        self.released: list[str] = []

    def step(self, request: StepRequest) -> StepOutput:
        self.requests.append(request)
        if request.strategy == "terminate":
            text = f"\\boxed{{{self.answer}}}"
        else:
            text = self.texts.get(request.strategy, f"step {len(request.steps)} = done")
        n = min(self.tokens_per_step, request.max_new_tokens)
        finish = "length" if self.tokens_per_step > request.max_new_tokens else "stop"
        return StepOutput(
            text=text, question_ids=[1, 2, 3], prompt_ids=[7], completion_ids=[9] * n, logprobs=[-0.5] * n, meta={"finish_reason": finish}
        )

    def complete(self, question: str, max_new_tokens: int, **options) -> StepOutput:
        self.requests.append(StepRequest(question, [], "", "", max_new_tokens, "", **options))
        n = min(self.tokens_per_step, max_new_tokens)
        return StepOutput(text=f"plain \\boxed{{{self.answer}}}", question_ids=[1, 2, 3], completion_ids=[9] * n, logprobs=[-0.5] * n)

    def release(self, trajectory_id: str) -> None:
        self.released.append(trajectory_id)


class SlowReasoner(ScriptedReasoner):
    """A ScriptedReasoner that takes `delay` seconds a step, to watch cancellation."""

    def __init__(self, delay: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.delay = delay

    def step(self, request: StepRequest) -> StepOutput:
        time.sleep(self.delay)
        return super().step(request)


class GatedReasoner(ScriptedReasoner):
    """A ScriptedReasoner whose steps wait for `release`; `entered` is set once a step has started."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.entered = threading.Event()
        self.release = threading.Event()

    def step(self, request: StepRequest) -> StepOutput:
        self.entered.set()
        self.release.wait(30)
        return super().step(request)


def wait_for(condition, timeout: float = 30.0, what: str = "the condition") -> None:
    """Poll `condition()` until true; fail after `timeout` seconds (a bound, not a timing assumption)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:g} s"
        time.sleep(0.02)


def length_reward(completions, **kwargs) -> list[float]:
    """Differs between completions even for an untrained model, so the reasoner always has an advantage."""
    return [len(c) / 100 for c in completions]


def tiny_args(tmp_path, **overrides):
    """A `MARLConfig` sized for the tiny test models: 4 prompts x 2 generations, 3 steps of 8 tokens."""
    from trainers.marl_config import MARLConfig

    kw = dict(
        output_dir=str(tmp_path / "run"), per_device_train_batch_size=4, num_generations=2, gradient_accumulation_steps=1,
        max_reasoning_steps=3, max_step_tokens=8, max_completion_length=32, max_steps=2, stage2_start_step=1,
        learning_rate=1e-2, planner_learning_rate=1e-2, temperature=1.0, logging_steps=1, save_strategy="no",
        report_to="none", bf16=False, gradient_checkpointing=False, seed=0, disable_tqdm=True,
        # The default, said here because the random test planner's plans seldom repeat within a group of 2, so
        # `plan` credit would give the reasoner no gradient at all; tests of the credit options set it themselves.
        reasoner_credit="group",
    )
    kw.update(overrides)
    return MARLConfig(**kw)


@pytest.fixture
def library() -> StrategyLibrary:
    return StrategyLibrary.default()


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_lm(tokenizer):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(tiny_config(len(tokenizer), hidden=32, layers=2, heads=2), attn_implementation="eager").eval()


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory, tiny_lm, tokenizer):
    path = tmp_path_factory.mktemp("tiny_lm")
    tiny_lm.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def planner_dir(tmp_path_factory, tokenizer):
    """A saved untrained PolicyPlanner on a tiny backbone."""
    from rsim_graph.planners.policy import PolicyPlanner

    torch.manual_seed(1)
    backbone = AutoModel.from_config(tiny_config(len(tokenizer), hidden=32, layers=2, heads=2))
    path = tmp_path_factory.mktemp("planner")
    PolicyPlanner(backbone, tokenizer, StrategyLibrary.default(), max_length=96, max_step_chars=24).save_pretrained(path)
    return path


@pytest.fixture(params=[False, True], ids=["static", "continuous"])
def hf_reasoner(request, tiny_lm, tokenizer) -> HFReasoner:
    """The reasoner under both batching modes: every test that uses it runs for each."""
    return HFReasoner(tiny_lm, tokenizer, temperature=0.0, continuous=request.param)


@pytest.fixture
def tiny_backbone(tokenizer):
    torch.manual_seed(1)
    return AutoModel.from_config(tiny_config(len(tokenizer), hidden=32, layers=2, heads=2), attn_implementation="eager")


class OpenAIHandler(BaseHTTPRequestHandler):
    """A minimal OpenAI-compatible chat endpoint: boxes 5 after a Terminate prompt, else writes a step."""

    requests: ClassVar[list] = []
    refuse: ClassVar[tuple[int, str] | None] = None  # (status, message): answer every request with this error

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        OpenAIHandler.requests.append(body)
        if OpenAIHandler.refuse:
            status, message = OpenAIHandler.refuse
            return self.send_json(status, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}})
        last = body["messages"][-1]["content"]
        text = "\\boxed{5}" if "Terminate" in last else "Known: 2 and 3."
        reply = {
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        }
        self.send_json(200, reply)

    def send_json(self, status: int, reply: dict) -> None:
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def openai_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), OpenAIHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    OpenAIHandler.requests.clear()
    OpenAIHandler.refuse = None
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()
