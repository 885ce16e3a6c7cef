"""How token-level reasoners build a step's context: the templated question, earlier steps' exact ids, the
injected strategy. One base class for every backend that generates from token ids (transformers, vLLM,
TRL's vLLM server), so their contexts are token for token the same."""

from __future__ import annotations

from rsim_graph.errors import InputError
from rsim_graph.reasoners.base import StepRequest
from rsim_graph.safety import strip_reserved
from rsim_graph.state import ChatTurn


def was_cut(tokenizer, step, delimiter: str) -> bool:
    """Whether a step's generated ids stop short of both EOS and the delimiter (its token budget cut it)."""
    ids = step.get("completion_ids")
    if not ids or ids[-1] == tokenizer.eos_token_id:
        return False
    return not tokenizer.decode(ids[-8:], skip_special_tokens=False).endswith(delimiter)


class TokenPrompts:
    """Context building from `self.tokenizer` (a transformers tokenizer, set by the subclass)."""

    def question_ids(self, question: str, history: list[ChatTurn] | None = None) -> list[int]:
        turns = [*(history or []), {"role": "user", "content": question}]
        # User text must not contain the tokenizer's own control tokens (turn markers, added tokens).
        reserved = [t.content for t in self.tokenizer.added_tokens_decoder.values()]
        messages = [{"role": t["role"], "content": strip_reserved(t["content"], reserved)} for t in turns]
        question = messages[-1]["content"]
        if not question.strip():
            raise InputError("the question holds nothing but this model's special tokens: send the problem to solve")
        if self.tokenizer.chat_template:
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:
            text = f"Question: {question}\nAnswer:\n"
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def context(self, request: StepRequest) -> tuple[list[int], list[int], list[int]]:
        """(question_ids, injected_ids, full context ids) for a request."""
        q_ids = request.question_ids or self.question_ids(request.question, request.history)
        ids = list(q_ids)
        for s in request.steps:
            # Exact ids of earlier steps; a backend-less step (text only) is re-encoded.
            ids += s.get("prompt_ids") or self.encode(s["injected"])
            ids += s.get("completion_ids") or self.encode(s["text"] + request.delimiter)
        injected = request.injected
        if request.steps and was_cut(self.tokenizer, request.steps[-1], request.delimiter):
            # A step cut by its token budget ends mid-sentence: close it before the next strategy prompt. The
            # delimiter goes into this step's injected ids, so the trainer sees exactly this context (masked).
            injected = request.delimiter + injected
        injected_ids = self.encode(injected)
        return list(q_ids), injected_ids, ids + injected_ids
