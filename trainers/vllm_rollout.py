"""The reasoner for `use_vllm=True`: TRL's own vLLM engine, in colocate or server mode (needs a GPU; not run here).

- colocate: each process owns a `vllm.LLM` (TRL keeps its weights in sync); the graph drives it
  through `VLLMReasoner`, exactly as at inference time.
- server: only the main process talks to `trl vllm-serve`. Every batched step call becomes a
  collective round: all processes gather their requests on the main one, which generates them in one
  call and scatters the results. A process whose trajectories are done keeps joining rounds with no
  requests until every process is done (`drain`), so every rank makes the same number of calls.
"""

from __future__ import annotations

from accelerate.state import PartialState
from accelerate.utils import broadcast_object_list, gather_object

from rsim_graph.engine.batching import MicroBatcher
from rsim_graph.reasoners.base import StepOutput, StepRequest
from rsim_graph.reasoners.tokens import TokenPrompts
from rsim_graph.reasoners.vllm import VLLMReasoner


class LockstepServerReasoner(TokenPrompts):
    """Steps from TRL's `VLLMClient`, generated in rounds that every process joins.

    Args:
        client: `trl.generation.vllm_client.VLLMClient` on the main process (None elsewhere).
        tokenizer: the reasoner's tokenizer.
        is_main (`bool`): whether this process talks to the server.
        temperature, top_p (`float`): sampling.
    """

    def __init__(self, client, tokenizer, *, is_main: bool, temperature: float = 1.0, top_p: float = 1.0):
        self.client, self.tokenizer, self.is_main = client, tokenizer, is_main
        self.temperature, self.top_p = temperature, top_p
        self.batcher = MicroBatcher(self.generate_batch, max_batch=1024)

    def step(self, request: StepRequest) -> StepOutput:
        return self.batcher(request)

    def release(self, trajectory_id: str) -> None:
        pass

    def generate_batch(self, requests: list[StepRequest]) -> list[StepOutput]:
        contexts = [self.context(r) for r in requests]
        # "" asks for no stop string (the terminating step runs to EOS or its budget).
        jobs = [(ids, r.max_new_tokens, r.delimiter if r.stop_at_delimiter else "") for r, (_, _, ids) in zip(requests, contexts, strict=True)]
        results, _ = self._round(jobs, done=False)
        return [
            StepOutput(text=text, question_ids=q, prompt_ids=inj, completion_ids=ids, logprobs=lps)
            for (q, inj, _), (text, ids, lps) in zip(contexts, results, strict=True)
        ]

    def drain(self) -> None:
        """Join rounds with no requests until every process has finished its trajectories."""
        everyone_done = False
        while not everyone_done:
            _, everyone_done = self._round([], done=True)

    def _round(self, jobs: list[tuple[list[int], int, str]], *, done: bool) -> tuple[list, bool]:
        gathered = gather_object([(jobs, done)])  # one entry per process, in rank order
        payload = [None]
        if self.is_main:
            flat = [job for rank_jobs, _ in gathered for job in rank_jobs]
            outputs = self._generate(flat)
            per_rank, k = [], 0
            for rank_jobs, _ in gathered:
                per_rank.append(outputs[k : k + len(rank_jobs)])
                k += len(rank_jobs)
            payload = [(per_rank, all(d for _, d in gathered))]
        broadcast_object_list(payload, from_process=0)
        per_rank, everyone_done = payload[0]
        return per_rank[PartialState().process_index], everyone_done

    def _generate(self, jobs: list[tuple[list[int], int, str]]) -> list[tuple[str, list[int], list[float]]]:
        """One server call per distinct (budget, delimiter): the jobs of a round mostly share both."""
        results: list = [None] * len(jobs)
        groups: dict[tuple[int, str], list[int]] = {}
        for i, (_, max_tokens, delimiter) in enumerate(jobs):
            groups.setdefault((max_tokens, delimiter), []).append(i)
        for (max_tokens, delimiter), idx in groups.items():
            out = self.client.generate(
                prompts=[jobs[i][0] for i in idx], n=1, temperature=self.temperature, top_p=self.top_p,
                max_tokens=max_tokens, logprobs=0, generation_kwargs={"stop": [delimiter] if delimiter else None, "include_stop_str_in_output": True},
            )
            for i, completion, lps in zip(idx, out["completion_ids"], out["logprobs"], strict=True):
                text = self.tokenizer.decode(completion, skip_special_tokens=True)
                flat = [float(x[0]) if isinstance(x, list) else float(x) for x in lps]  # (tokens, 1) -> (tokens,)
                results[i] = (text.removesuffix(delimiter).strip("\n"), list(completion), flat)
        return results


def vllm_reasoner(trainer):
    """The graph's reasoner on TRL's vLLM engine (`trainer.vllm_generation`)."""
    args, gen = trainer.args, trainer.vllm_generation
    if args.vllm_mode == "colocate":
        return VLLMReasoner.from_llm(gen.llm, temperature=args.temperature, top_p=args.top_p)
    return LockstepServerReasoner(
        gen.vllm_client if trainer.accelerator.is_main_process else None,
        trainer.processing_class,
        is_main=trainer.accelerator.is_main_process,
        temperature=args.temperature,
        top_p=args.top_p,
    )
