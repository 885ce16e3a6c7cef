"""An in-process `vllm.LLM` as the reasoner, with prefix caching on (needs a GPU; not run in CI).

vLLM's automatic prefix caching plays the role of `HFReasoner`'s per-trajectory cache: every step
re-submits the trajectory's token ids and vLLM reuses the cached blocks of the shared prefix.
"""

from __future__ import annotations

import logging

from rsim_graph.engine.batching import MicroBatcher
from rsim_graph.errors import ReasonerError
from rsim_graph.reasoners.base import StepOutput, StepRequest
from rsim_graph.reasoners.tokens import TokenPrompts

logger = logging.getLogger(__name__)


def _import_vllm():
    try:
        import vllm
    except ImportError as e:
        raise ReasonerError(
            "vLLM is not installed; install the extra with `pip install -e '.[vllm]'` on a machine with a GPU, "
            "or use the transformers reasoner instead"
        ) from e
    return vllm


class VLLMReasoner(TokenPrompts):
    """Steps from `vllm.LLM`.

    Args:
        model (`str`): model path or id.
        temperature, top_p (`float`): sampling.
        seed (`int`, *optional*).
        llm_kwargs: passed to `vllm.LLM` (e.g. `gpu_memory_utilization`).
    """

    def __init__(self, model: str, *, temperature: float = 1.0, top_p: float = 1.0, seed: int | None = None, **llm_kwargs):
        vllm = _import_vllm()
        self.vllm = vllm
        self.llm = vllm.LLM(model=model, enable_prefix_caching=True, seed=seed or 0, **llm_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.temperature, self.top_p = temperature, top_p
        self.batcher = MicroBatcher(self.generate_batch, max_batch=256)

    @classmethod
    def from_llm(cls, llm, *, temperature: float = 1.0, top_p: float = 1.0) -> VLLMReasoner:
        """Wrap an existing `vllm.LLM`, e.g. the engine TRL's trainer colocates with training."""
        self = cls.__new__(cls)
        self.vllm = _import_vllm()
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self.temperature, self.top_p = temperature, top_p
        self.batcher = MicroBatcher(self.generate_batch, max_batch=256)
        return self

    def step(self, request: StepRequest) -> StepOutput:
        return self.batcher(request)

    def complete(self, question: str, max_new_tokens: int, **options) -> StepOutput:
        """The reasoner alone (ZeroCoT): nothing injected, until EOS. `options` are `StepRequest` fields."""
        return self.batcher(StepRequest(question, [], "", "", max_new_tokens, self.tokenizer.eos_token or "", **options))

    def release(self, trajectory_id: str) -> None:
        pass

    def generate_batch(self, requests: list[StepRequest]) -> list[StepOutput]:
        contexts = [self.context(r) for r in requests]
        params = [
            self.vllm.SamplingParams(
                temperature=self.temperature if r.temperature is None else r.temperature,
                top_p=self.top_p if r.top_p is None else r.top_p,
                seed=r.seed,
                max_tokens=r.max_new_tokens,
                stop=[r.delimiter] if r.stop_at_delimiter and r.delimiter != self.tokenizer.eos_token else None,
                include_stop_str_in_output=True,
                logprobs=0,
            )
            for r in requests
        ]
        prompts = [{"prompt_token_ids": ids} for _, _, ids in contexts]
        results = self.llm.generate(prompts, params, use_tqdm=False)
        outputs = []
        for r, (q_ids, inj_ids, _), res in zip(requests, contexts, results, strict=True):
            o = res.outputs[0]
            lps = [d[t].logprob for d, t in zip(o.logprobs or [], o.token_ids, strict=False)]
            text = o.text.removesuffix(r.delimiter) if r.stop_at_delimiter else o.text
            meta = {"finish_reason": o.finish_reason}  # "stop" or "length", as OpenAI's
            outputs.append(
                StepOutput(text=text.strip("\n"), question_ids=q_ids, prompt_ids=inj_ids, completion_ids=list(o.token_ids), logprobs=lps, meta=meta)
            )
        return outputs
