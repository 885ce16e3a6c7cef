"""rSIM's leader-follower GRPO as a small subclass of TRL's `GRPOTrainer`."""

from __future__ import annotations

import json
import logging
import re
from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate.utils import DistributedType, gather_object, reduce
from torch.optim.lr_scheduler import LambdaLR
from transformers import TrainerCallback
from trl import GRPOTrainer
from trl.distributed import DistributedBackend
from trl.models.utils import unwrap_model_for_generation

from rsim_graph.errors import CheckpointError
from rsim_graph.loading import resolve_injection
from rsim_graph.planners.policy import PolicyPlanner
from rsim_graph.reasoners.hf import HFReasoner
from rsim_graph.scoring.rewards import planner_reward_funcs, reasoner_reward_funcs
from rsim_graph.strategies import StrategyLibrary
from trainers.advantages import between_plan_share, group_advantages, reasoner_advantages
from trainers.marl_config import MARLConfig
from trainers.rollout import GraphRollout

logger = logging.getLogger(__name__)

PLANNER_DIR = "planner"  # inside each checkpoint
STATE_FILE = "marl_state.json"
PLANNER_ATTR = "rsim_planner"  # the planner's name as a submodule of the reasoner's model
# Stable metric names: reward components, then the rollout statistics.
REWARD_NAMES = ("R_acc", "R_format", "R_follow", "R_penalty", "R_terminal")


def hf_reasoner(trainer: GRPOTrainer) -> HFReasoner:
    """The trainer's live model as the graph's reasoner (weights are shared, never copied)."""
    if trainer.use_vllm:
        from trainers.vllm_rollout import vllm_reasoner

        return vllm_reasoner(trainer)
    args = trainer.args
    model = trainer.accelerator.unwrap_model(trainer.model)
    return HFReasoner(
        model, trainer.processing_class, temperature=args.temperature, top_p=args.top_p, seed=args.seed + trainer.accelerator.process_index
    )


class MARLTrainer(GRPOTrainer):
    """Multi-agent GRPO for rSIM (arXiv 2512.08300): a planner (leader) and a reasoner (follower) trained together.

    What differs from `GRPOTrainer`:
    1. Rollouts come from the rSIM graph through `rollout_func` (`trainers.rollout.GraphRollout`), not from
       `model.generate`. Injected strategy text is masked out of the reasoner's loss with `env_mask`.
    2. A second policy, the planner, is attached to the reasoner's model as the submodule `rsim_planner`,
       during `train()`, so accelerate prepares both agents as one module: DDP averages both agents'
       gradients, DeepSpeed ZeRO shards and gathers both. It joins the optimizer as its own parameter group
       (`planner_learning_rate`) and is updated in the same optimizer step. Whatever is saved as the
       reasoner, loaded into it or synced to vLLM sees the model without it (`reasoner_only`).
    3. `_generate_and_score_completions` also scores the planner (R_acc + R_penalty + R_terminal) and
       centres those rewards within each group of `num_generations`, as GRPO does for the reasoner (divided by
       the group's std, or not: `planner_scale_rewards`), and replaces the reasoner's GRPO baseline by
       `reasoner_credit`'s (`trainers/advantages.py`).
    4. `_compute_loss` returns `L_planner + L_reasoner`, where `L_reasoner` is GRPO's loss unchanged and
       `L_planner` is the clipped-ratio surrogate over the planner's per-step choices (mean over choices),
       with optional KL (`planner_beta`) and entropy bonus (`planner_entropy_coef`).
    5. λ scales the learning rates (`create_scheduler`): the planner's by λ, the reasoner's by 1 - λ, with
       λ = `lambda_stage1` before `stage2_start_step` and `lambda_stage2` from it on. See `MARLConfig`
       for why λ cannot act as a loss weight under Adam.
    6. Checkpoints also hold the planner, the stage and the planner's and reasoner's sampler states;
       resuming restores them, and the stage schedule is read back from the checkpoint.
    7. Extra metrics: R_acc, R_format, R_follow, R_penalty, R_terminal, accuracy, steps_per_trajectory,
       planner_entropy, lambda, planner_learning_rate, strategy/<id> usage shares, and (with
       `log_update_norms`) update_norm/planner and update_norm/reasoner.

    Known deviations from the paper (its code, prompts and exact hyperparameters are not published):
    - λ weights the agents' learning rates, not their losses (Adam would cancel a loss weight).
    - R_acc is graded on the reasoner's generated step texts, joined by the library's step delimiter,
      for both agents: injected strategy prompts are never graded (the terminate prompt itself
      contains `\\boxed{}`).
    - The strategy prompts, R_format's checks and R_follow's per-strategy regexes are ours
      (`rsim_graph/strategies.yaml`, `rsim_graph/scoring/rewards.py`).
    - R_terminal scores a `terminate` that a budget forced as -1 (the paper does not discuss budgets), and a
      run ended by the repeat rule as `repeat_terminal_reward` (-1 by default).
    - The planner's surrogate is averaged over its choices in a micro-batch; the paper does not say how
      it aggregates over steps.
    - Not a deviation by default: the reasoner's baseline is its group's mean, as in the paper, though most
      of what it then credits to the reasoner is the planner's doing (`python -m trainers.credit`);
      `reasoner_credit="plan"` or `"prefix"` credits only what the reasoner's own sampling changed, and
      scored lower on ArithWorld (docs/design.md, deviation 13).
    - The planner reads the question and the last 200 characters of each step tagged with its strategy
      (`planner_text`), not the reasoner's full context.
    - One optimizer holds both agents as two parameter groups (so its checkpoint holds both agents'
      optimizer states); gradient clipping uses `max_grad_norm` for each agent separately (under DeepSpeed
      the engine clips both agents' gradients together, to its `gradient_clipping`).

    Args:
        model (`PreTrainedModel`): the reasoner.
        planner (`PolicyPlanner`): the planner; its library is the strategy library.
        args (`MARLConfig`).
        train_dataset (`Dataset`): columns `prompt` (the question) and `solution` (the gold answer).
        processing_class: the reasoner's tokenizer.
        reward_funcs (*optional*): the reasoner's rewards; defaults to R_acc + R_format + R_follow.
        **kwargs: passed to `GRPOTrainer`.
    """

    _tag_names = ["trl", "grpo", "rsim"]  # noqa: RUF012 (overrides TRL's class attribute)
    _name = "rSIM-MARL"

    def __init__(self, model, planner: PolicyPlanner, args: MARLConfig, train_dataset, processing_class, reward_funcs=None, **kwargs):
        if args.mask_truncated_completions:
            raise ValueError(
                "mask_truncated_completions=True would mask every rSIM trajectory: they end at a step delimiter, "
                "not at EOS; set it to False (the graph's budgets bound the length instead)"
            )
        self.planner = planner
        self.library: StrategyLibrary = planner.library
        args.injection = resolve_injection(args.injection, getattr(model, "name_or_path", None), None, processing_class)
        rollout = GraphRollout(
            planner,
            self.library,
            hf_reasoner,
            max_steps=args.max_reasoning_steps,
            max_step_tokens=args.max_step_tokens,
            max_total_tokens=args.max_completion_length,
            injection=args.injection,
        )
        super().__init__(
            model=model,
            reward_funcs=reward_funcs or reasoner_reward_funcs(self.library),
            args=args,
            train_dataset=train_dataset,
            processing_class=processing_class,
            rollout_func=self._rollout,
            **kwargs,
        )
        self.rollout = rollout
        self.planner.to(self.accelerator.device)
        self.planner_ids = {id(p) for p in planner.parameters()}
        self.dist = DistributedBackend(self.accelerator)
        if self.dist.is_zero3:  # ZeRO-3 gathers a layer on each call: one planner call per micro-batch on every rank
            planner.chunk = 1 << 30
        if self.use_vllm:  # vLLM serves the reasoner alone: sync its weights with the planner detached
            sync = self.vllm_generation.sync_weights

            def sync_reasoner_weights():
                with self.reasoner_only():
                    sync()

            self.vllm_generation.sync_weights = sync_reasoner_weights
        self.ref_planner = planner.frozen_copy() if args.planner_beta > 0 else None
        self.saved_stage2_step: int | None = None  # read back from a checkpoint on resume
        if args.log_update_norms:
            self.add_callback(UpdateNorms(self))

    # -- stages: λ scales each agent's learning rate ------------------------------------------------------
    def stage2_step(self) -> int:
        """First optimizer step of stage 2: the checkpoint's when resuming, else the config's for this run."""
        if self.saved_stage2_step is not None:
            return self.saved_stage2_step
        return self.args.stage2_step(self.state.max_steps)

    def stage(self, step: int | None = None) -> int:
        """The stage of optimizer step `step` (0-based; default: the current one)."""
        return 2 if (self.state.global_step if step is None else step) >= self.stage2_step() else 1

    def current_lambda(self, step: int | None = None) -> float:
        return self.args.lambda_stage2 if self.stage(step) == 2 else self.args.lambda_stage1

    def agent_lr_scale(self, step: int, planner: bool) -> float:
        lam = self.current_lambda(step)
        return lam if planner else 1.0 - lam

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        scheduler = super().create_scheduler(num_training_steps, optimizer)
        if not isinstance(scheduler, LambdaLR):
            raise ValueError(
                f"lr_scheduler_type={self.args.lr_scheduler_type!r} is not a LambdaLR schedule, and λ scales each agent's "
                "learning rate through one; use constant, linear, cosine or another LambdaLR schedule"
            )
        last = len(scheduler.optimizer.param_groups) - 1  # the planner's group is added last (create_optimizer)
        scheduler.lr_lambdas = [
            lambda step, f=f, planner=(i == last): f(step) * self.agent_lr_scale(step, planner)
            for i, f in enumerate(scheduler.lr_lambdas)
        ]
        for group, base, f in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True):
            group["lr"] = base * f(scheduler.last_epoch)
        scheduler._last_lr = [g["lr"] for g in scheduler.optimizer.param_groups]
        return scheduler

    # -- one module holding both agents ----------------------------------------------------------------
    def train(self, *args, **kwargs):
        """Trains with the planner attached to the model, so accelerate wraps (DDP) or shards (DeepSpeed ZeRO) both
        agents as one module; the caller's model is given back without it."""
        self.accelerator.unwrap_model(self.model).add_module(PLANNER_ATTR, self.planner)
        try:
            return super().train(*args, **kwargs)
        finally:
            self.accelerator.unwrap_model(self.model)._modules.pop(PLANNER_ATTR, None)

    @contextmanager
    def reasoner_only(self):
        """The reasoner's model with the planner detached: what is saved as, loaded into or synced from the reasoner."""
        holder = self.accelerator.unwrap_model(self.model)
        planner = holder._modules.pop(PLANNER_ATTR, None)
        try:
            yield holder
        finally:
            if planner is not None:
                holder._modules[PLANNER_ATTR] = planner

    def _set_planner_checkpointing(self) -> None:
        """The planner's activation checkpointing follows `planner_gradient_checkpointing`. `gradient_checkpointing`
        reaches every submodule of the model, the attached planner included, and TRL re-enables it after each
        generation, so this runs after each generation, before the loss pass."""
        backbone = self.planner.backbone
        if self.args.planner_gradient_checkpointing and not backbone.is_activation_checkpointing:
            backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        elif not self.args.planner_gradient_checkpointing and backbone.is_activation_checkpointing:
            backbone.activation_checkpointing_disable()

    def reasoner_parameters(self) -> list[torch.nn.Parameter]:
        """The reasoner's trainable parameters (LoRA's alone under peft)."""
        return [p for p in self.accelerator.unwrap_model(self.model).parameters() if id(p) not in self.planner_ids and p.requires_grad]

    # -- optimizer: the planner is a second parameter group ------------------------------------------
    def create_optimizer(self, model=None):
        with self.reasoner_only():  # TRL's groups (decay / no decay) over the reasoner's parameters only
            optimizer = super().create_optimizer(model)
        optimizer.add_param_group({"params": [p for p in self.planner.parameters() if p.requires_grad], "lr": self.args.planner_learning_rate, "weight_decay": 0.0})
        return optimizer

    def _clip_grad_norm(self, model):
        """Clips each agent's gradient to `max_grad_norm` on its own; returns the reasoner's norm before clipping."""
        if self.accelerator.distributed_type == DistributedType.DEEPSPEED:  # the engine clips the whole module
            return super()._clip_grad_norm(model)
        norm = self.accelerator.clip_grad_norm_(self.reasoner_parameters(), self.args.max_grad_norm)  # unscales fp16 first
        planner = [p for p in self.planner.parameters() if p.grad is not None]
        if planner:
            torch.nn.utils.clip_grad_norm_(planner, self.args.max_grad_norm)
        return norm

    # -- rollouts and the planner's advantages --------------------------------------------------------
    def _rollout(self, prompts, trainer) -> dict:
        if not self.dist.is_zero3:
            return self.rollout(prompts, trainer)
        # Ranks call the agents a different number of times in a rollout, and under ZeRO-3 every call would be a
        # collective gather: gather both agents once, with the hooks off, as TRL does for its own generation.
        with unwrap_model_for_generation(self.model_wrapped, self.accelerator, gather_deepspeed3_params=True):
            return self.rollout(prompts, trainer)

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)  # TRL merged the rollout's columns into `inputs`
        self._set_planner_checkpointing()
        mode = "train" if self.model.training else "eval"
        device = self.accelerator.device
        keys = ("solution", "strategies", "forced", "step_texts", "stop_reason", "planner_texts", "planner_actions", "planner_logps")
        cols = {key: [row[key] for row in inputs] for key in keys}
        finals = [self.library.step_delimiter.join(t) for t in cols["step_texts"]]
        kw = {"completions": finals, **{k: cols[k] for k in ("solution", "strategies", "forced", "step_texts", "stop_reason")}}
        acc, penalty, terminal = (f(**kw, repeat_score=self.args.repeat_terminal_reward) for f in planner_reward_funcs(self.library))
        _, fmt, follow = (f(**kw) for f in reasoner_reward_funcs(self.library))
        parts = [[0.0 if v is None else v for v in part] for part in (acc, fmt, follow, penalty, terminal)]
        local = torch.tensor(parts, dtype=torch.float32, device=device).T  # (B, 5); None (cannot judge) counts 0
        everyone = self.accelerator.gather(local)  # (B * processes, 5)

        # Planner advantages: group-relative, over the `num_generations` trajectories of one prompt.
        G = self.num_generations if mode == "train" else self.num_generations_eval
        weights = torch.tensor(self.args.planner_reward_weights, device=device)
        reward = (everyone[:, [0, 3, 4]] * weights).sum(-1)  # (B * processes,)
        B = len(inputs)
        local_rows = slice(self.accelerator.process_index * B, (self.accelerator.process_index + 1) * B)
        output["planner_advantages"] = group_advantages(reward, G, self.args.planner_scale_rewards)[local_rows]
        self._credit_reasoner(output, cols["strategies"], [row["step_lengths"] for row in inputs], G, local_rows, mode)
        for key in ("planner_texts", "planner_actions", "planner_logps"):
            output[key] = cols[key]
        if self.ref_planner is not None:
            output["planner_ref_logps"] = [self._ref_logps(texts) for texts in cols["planner_texts"]]
        self._log_rollout(mode, everyone, cols["strategies"], local.new_tensor([len(s) for s in cols["strategies"]]))
        return output

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # Kept for `_credit_reasoner`: the reasoner's rewards exactly as GRPO scored them, all processes' rows.
        self._reasoner_rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self._reasoner_rewards

    def _credit_reasoner(self, output: dict, strategies: list[list[str]], step_lengths: list[list[int]], G: int, local_rows: slice, mode: str) -> None:
        """Replaces GRPO's reasoner advantages with `reasoner_credit`'s (`trainers.advantages`); `group` keeps TRL's."""
        plans = [tuple(p) for p in gather_object(strategies)]  # every process's rows, in `gather` order
        lengths = gather_object(step_lengths)
        per_func = self._reasoner_rewards  # (B * processes, reward functions)
        rewards = (per_func * self.reward_weights.to(per_func.device)).nansum(1)
        rewards[torch.isnan(per_func).all(1)] = torch.nan  # unscorable: nobody's peer, and its own advantage is 0
        width = output["completion_ids"].shape[1]  # this process's padded length (TRL may pad beyond the longest row)
        adv = reasoner_advantages(
            rewards, plans, G, credit=self.args.reasoner_credit, scale=self.scale_rewards,
            step_lengths=lengths, width=max(width, *(sum(x) for x in lengths)),
        )
        adv = torch.nan_to_num(adv, nan=0.0)
        if self.args.reasoner_credit != "group":  # `group` is TRL's own advantage, left as computed
            local = adv[local_rows]
            output["advantages"] = (local[:, :width] if local.dim() == 2 else local).to(output["completion_ids"].device)
            # TRL logged its own (group) advantages for these rows: log the ones trained on instead (per-token: their mean).
            logged = self._logs["advantages"]
            for _ in range(min(len(plans), len(logged))):
                logged.pop()
            logged.extend((adv.sum(1) / (adv != 0).sum(1).clamp(min=1) if adv.dim() == 2 else adv).tolist())
        # How much of the reasoner's advantage is the planner's doing (0 under `plan`, by construction), and how many
        # trajectories share their plan with another of their group (the rows `plan` can credit).
        self._metrics[mode]["credit/between_plan_share"].append(between_plan_share(adv, plans, G))
        shared = [sum(p == plans[k] for p in plans[k - k % G : k - k % G + G]) > 1 for k in range(len(plans))]
        self._metrics[mode]["credit/shared_plan_share"].append(sum(shared) / len(shared))

    @torch.no_grad()
    def _ref_logps(self, texts: list[str]) -> torch.Tensor | None:
        return torch.log_softmax(self.ref_planner(texts).float(), -1) if texts else None

    def _log_rollout(self, mode: str, rewards: torch.Tensor, strategies: list[list[str]], lengths: torch.Tensor) -> None:
        metrics = self._metrics[mode]
        for name, value in zip(REWARD_NAMES, rewards.mean(0).tolist(), strict=True):
            metrics[name].append(value)
        metrics["accuracy"].append(rewards[:, 0].mean().item())
        metrics["steps_per_trajectory"].append(self.accelerator.gather(lengths).mean().item())
        counts = torch.zeros(len(self.library), device=lengths.device)
        for used in strategies:
            for s in used:
                counts[self.library.index(s)] += 1
        counts = reduce(counts, reduction="sum") if self.accelerator.num_processes > 1 else counts
        for sid, share in zip(self.library.ids, (counts / counts.sum().clamp(min=1)).tolist(), strict=True):
            metrics[f"strategy/{sid}"].append(share)

    # -- the objective ------------------------------------------------------------------------------
    def _compute_loss(self, model, inputs):
        # No λ here: the agents share no parameters, so λ acts through their learning rates (create_scheduler).
        return self._planner_loss(inputs) + super()._compute_loss(model, inputs)

    def _planner_loss(self, inputs) -> torch.Tensor:
        mode = "train" if self.model.training else "eval"
        device = self.accelerator.device
        texts = [t for row in inputs["planner_texts"] for t in row]
        if not texts:  # every step forced: nothing to learn, but DDP and ZeRO expect the planner's pass on every rank
            return self.planner(["?"]).sum() * 0.0
        counts = torch.tensor([len(row) for row in inputs["planner_texts"]], device=device)
        actions = torch.tensor([a for row in inputs["planner_actions"] for a in row], device=device)  # (N,)
        old = torch.tensor([x for row in inputs["planner_logps"] for x in row], device=device)  # (N,)
        adv = inputs["planner_advantages"].repeat_interleave(counts)  # (N,)
        logps = torch.log_softmax(self.planner(texts).float(), dim=-1)  # (N, n_strategies)
        new = logps.gather(1, actions[:, None]).squeeze(1)
        ratio = torch.exp(new - old)
        eps = self.args.planner_epsilon
        surrogate = torch.min(ratio * adv, torch.clamp(ratio, 1 - eps, 1 + eps) * adv)
        entropy = -(logps.exp() * logps).sum(-1)  # (N,)
        loss = -surrogate.mean() - self.args.planner_entropy_coef * entropy.mean()
        if self.ref_planner is not None:
            ref = torch.cat([r for r in inputs["planner_ref_logps"] if r is not None]).to(device)
            kl = (logps.exp() * (logps - ref)).sum(-1)
            loss = loss + self.args.planner_beta * kl.mean()
            self._metrics[mode]["planner_kl"].append(kl.mean().item())
        self._metrics[mode]["planner_entropy"].append(entropy.mean().item())
        self._metrics[mode]["planner_loss"].append(loss.item())
        self._metrics[mode]["lambda"].append(self.current_lambda())
        if self.optimizer is not None:
            self._metrics[mode]["planner_learning_rate"].append(self.optimizer.param_groups[-1]["lr"])
        normalizer = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        return loss / normalizer

    # -- checkpoints ----------------------------------------------------------------------------------
    def _save(self, output_dir=None, state_dict=None):
        if state_dict is not None:  # gathered by DeepSpeed from the module holding both agents
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith(f"{PLANNER_ATTR}.")}
        with self.reasoner_only():
            super()._save(output_dir, state_dict)

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
        self.save_planner(folder / PLANNER_DIR)
        if self.args.should_save:
            state = {"stage": self.stage(), "lambda": self.current_lambda(), "stage2_start_step": self.stage2_step()}
            (folder / STATE_FILE).write_text(json.dumps(state, indent=2))
        samplers = {"planner": self.planner.generator.get_state()}
        if self.rollout.reasoner is not None and hasattr(self.rollout.reasoner, "generator"):
            samplers["reasoner"] = self.rollout.reasoner.generator.get_state()
        torch.save(samplers, folder / f"samplers_{self.accelerator.process_index}.pt")

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        state_file = Path(resume_from_checkpoint) / STATE_FILE
        if not state_file.is_file():  # before anything is loaded: the config's stage schedule may not be the run's
            raise CheckpointError(f"checkpoint {resume_from_checkpoint} is incomplete (no {STATE_FILE}): its stage schedule is unknown")
        with self.reasoner_only():
            super()._load_from_checkpoint(resume_from_checkpoint, model)
        saved = PolicyPlanner.from_pretrained(Path(resume_from_checkpoint) / PLANNER_DIR)
        if saved.library.ids != self.library.ids:
            raise CheckpointError(
                f"the checkpoint's planner scores {saved.library.ids}, this run's library is {self.library.ids}; "
                "resume with the strategies file the run started with"
            )
        if not self.is_deepspeed_enabled:  # a DeepSpeed engine's checkpoint already holds the planner's shards
            self.planner.load_state_dict(saved.state_dict())
        saved_step = json.loads(state_file.read_text())["stage2_start_step"]
        if self.args.stage2_start_step is not None and self.args.stage2_start_step != saved_step:
            logger.warning("stage 2 starts at step %d as in the checkpoint, not at --stage2_start_step %d", saved_step, self.args.stage2_start_step)
        self.saved_stage2_step = saved_step

    def _load_rng_state(self, checkpoint):
        super()._load_rng_state(checkpoint)
        path = Path(checkpoint) / f"samplers_{self.accelerator.process_index}.pt"
        if not path.is_file():
            return
        samplers = torch.load(path, weights_only=True)
        self.planner.generator.set_state(samplers["planner"])
        reasoner = self.rollout.prepare(self)
        if "reasoner" in samplers and hasattr(reasoner, "generator"):
            reasoner.generator.set_state(samplers["reasoner"])

    def save_planner(self, path: str | Path) -> None:
        """Saves the whole planner; every rank must call it (ZeRO-3 gathers the planner's shards)."""
        with self.dist.gather_params(list(self.planner.parameters())):
            if self.args.should_save:
                self.planner.save_pretrained(path)


class UpdateNorms(TrainerCallback):
    """Logs the L2 norm of each agent's parameter change in every optimizer step (a copy of the weights is kept)."""

    def __init__(self, trainer: MARLTrainer):
        self.trainer = trainer
        self.before: dict[str, list[torch.Tensor]] = {}

    def agents(self) -> dict[str, list[torch.nn.Parameter]]:
        return {"planner": [p for p in self.trainer.planner.parameters() if p.requires_grad], "reasoner": self.trainer.reasoner_parameters()}

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.before = {name: [p.detach().clone() for p in params] for name, params in self.agents().items()}

    def on_optimizer_step(self, args, state, control, **kwargs):
        for name, params in self.agents().items():
            sq = sum(((p.detach() - b).float() ** 2).sum() for p, b in zip(params, self.before[name], strict=True))
            self.trainer._metrics["train"][f"update_norm/{name}"].append(float(sq) ** 0.5)
        self.before = {}


def check_checkpoint(path: str | Path) -> None:
    """Fail with one line, before any training state is touched, if `path` is not a whole checkpoint of this trainer."""
    from safetensors import safe_open

    path = Path(path)
    hint = "resume from an earlier checkpoint-N, or start afresh without --resume_from_checkpoint"
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist; pass a checkpoint-N directory of this trainer, or 'true' for the latest")
    weights = "adapter_model.safetensors" if (path / "adapter_model.safetensors").is_file() else "model.safetensors"  # LoRA: the adapter alone
    for name in ("trainer_state.json", weights, "optimizer.pt", STATE_FILE, f"{PLANNER_DIR}/planner.json"):
        if not (path / name).is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete (no {name}); {hint}")
    current = "trainer_state.json"
    try:
        json.loads((path / current).read_text())
        current = STATE_FILE
        int(json.loads((path / current).read_text())["stage2_start_step"])
        current = weights
        with safe_open(str(path / current), "pt") as f:
            for key in f.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
                f.get_tensor(key)
        current = "optimizer.pt"
        torch.load(path / current, map_location="cpu", weights_only=True)
    except Exception as e:  # any failure to read a file is the same finding: the checkpoint is damaged
        raise CheckpointError(f"checkpoint {path} is corrupt ({current}: {str(e).splitlines()[0][:120]}); {hint}") from e
    PolicyPlanner.from_pretrained(path / PLANNER_DIR)  # raises CheckpointError with the reason


def last_whole_checkpoint(output_dir: str | Path) -> str | None:
    """The newest `checkpoint-N` in `output_dir` that `check_checkpoint` accepts (a run killed while saving leaves
    its newest one incomplete: the one before is used, with a warning); None when there is no checkpoint at all."""
    found = [p for p in Path(output_dir).glob("checkpoint-*") if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)]  # as HF's
    found.sort(key=lambda p: int(p.name.split("-")[1]), reverse=True)
    for path in found:
        try:
            check_checkpoint(path)
        except CheckpointError as e:
            logger.warning("skipping %s: %s", path.name, e)
            continue
        return str(path)
    if found:
        raise CheckpointError(f"no whole checkpoint in {output_dir}: each checkpoint-N is incomplete or corrupt; start afresh without --resume_from_checkpoint")
    return None

