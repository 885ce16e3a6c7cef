"""Configuration of the leader-follower trainer: TRL's `GRPOConfig` plus the planner's own settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from rsim_graph.config import runtime_field
from rsim_graph.strategies import INJECTIONS
from trainers.advantages import CREDITS, SCALES


@dataclass
class MARLConfig(GRPOConfig):
    r"""`GRPOConfig` for rSIM's two-agent GRPO (arXiv 2512.08300, Sec. 3.4).

    The reasoner (the follower) is the trainer's `model` and uses every GRPO setting as TRL defines it.
    The fields below configure the planner (the leader) and the objective
    `J = λ · J_planner + (1 - λ) · J_reasoner`.

    How λ acts: the two agents share no parameters, so weighting their losses only scales each agent's
    gradient by a constant, which Adam's normalisation cancels (measured: 100 AdamW steps with
    gradients x0.7 and x1.0 end within 2e-8 of each other). λ therefore scales each agent's *learning
    rate*: the planner's by λ and the reasoner's by 1 - λ. Under plain SGD this is exactly the weighted
    objective; under Adam it keeps what the weighting is for, a stage-1 planner that moves 0.7/0.3 as
    fast as the reasoner and a stage-2 reasoner that moves 0.7/0.3 as fast as the planner. The
    learning rates below are the multipliers' base values.

    Parameters:
        planner_learning_rate (`float`, *optional*, defaults to `1e-4`):
            Base learning rate of the planner's parameter group, scaled by λ (the reasoner's is
            `learning_rate`, scaled by 1 - λ).
        lambda_stage1 (`float`, *optional*, defaults to `0.7`):
            λ in stage 1, which emphasises the planner.
        lambda_stage2 (`float`, *optional*, defaults to `0.3`):
            λ in stage 2, which emphasises the reasoner.
        stage2_start_step (`int`, *optional*):
            Optimizer step at which stage 2 begins. `None` means half of `max_steps`; `0` runs stage 2
            alone; a value at or above `max_steps` runs stage 1 alone.
        planner_epsilon (`float`, *optional*, defaults to `0.2`):
            Clipping range of the planner's probability ratio.
        planner_beta (`float`, *optional*, defaults to `0.0`):
            KL coefficient of the planner against its initial weights (exact KL over the strategies).
            The reasoner's is TRL's `beta`.
        planner_entropy_coef (`float`, *optional*, defaults to `0.0`):
            Bonus on the planner's entropy, against the over-use of one strategy that the paper reports.
        max_reasoning_steps (`int`, *optional*, defaults to `12`):
            Steps per trajectory in rollouts (the graph's `max_steps`). The tokens the reasoner writes in a
            trajectory are bounded by `max_completion_length`; injected strategy prompts come on top.
        max_step_tokens (`int`, *optional*, defaults to `256`):
            Reasoner tokens per step in rollouts.
        max_completion_length (`int`, *optional*, defaults to `2048`):
            TRL's field, here the runtime's `max_total_tokens`: reasoner tokens per trajectory.
        planner_reward_weights (`list[float]`, *optional*, defaults to `[1.0, 1.0, 1.0]`):
            Weights of R_acc, R_penalty and R_terminal in the planner's reward (the paper sums them).
        repeat_terminal_reward (`float`, *optional*, defaults to `-1.0`):
            R_terminal of a run that the graph ended because the reasoner repeated a step verbatim (forced, like a
            budget's end, by default; `rsim_graph.scoring.rewards.terminal_reward`).
        injection (`str`, *optional*, defaults to `"auto"`):
            How the reasoner sees a strategy in rollouts, validation and the warm-up: `prefill` (the paper's),
            `system` (plus a system message stating the step protocol) or `headers` (docs/real-llm.md: Injection
            formats); `auto` as in the runtime (prefill for the bundled tiny models, system for others), resolved
            by the trainer from the reasoner it is given. The token ids the loss reads are the ones the graph
            built, so any choice trains exactly.
        reasoner_credit (`str`, *optional*, defaults to `"group"`):
            The reasoner's GRPO baseline (`trainers/advantages.py`): `group`, the paper's (the mean reward of the
            prompt's group, so the planner's choices are credited to the reasoner's tokens too); `plan`, the mean
            of the group's trajectories with the same strategy sequence (only what the reasoner's own sampling
            changed is credited to it); `prefix`, per step, the mean of those that shared the strategies so far.
            `group` is the default by the numbers (docs/training.md, "Results of the default run"): `plan` credits the
            reasoner exactly, but gives 2-3% of ArithWorld's trajectories any advantage, and scored lower.
        planner_scale_rewards (`str`, *optional*, defaults to `"group"`):
            What the planner's group-centred rewards are divided by, as TRL's `scale_rewards` for the reasoner:
            `group` (the group's std, GRPO's), `batch`, or `none` (Dr. GRPO: groups whose rewards barely differ
            get small advantages instead of unit-scale ones).
        planner_gradient_checkpointing (`bool`, *optional*, defaults to `False`):
            Recompute the planner backbone's activations in its loss pass (for large planners).
        log_update_norms (`bool`, *optional*, defaults to `False`):
            Log each agent's update size per optimizer step (`update_norm/planner`, `update_norm/reasoner`:
            the L2 norm of the parameter change). Keeps a copy of both agents' weights: small models only.
    """

    planner_learning_rate: float = field(default=1e-4, metadata={"help": "Learning rate of the planner."})
    lambda_stage1: float = field(default=0.7, metadata={"help": "λ in stage 1 (paper: 0.7)."})
    lambda_stage2: float = field(default=0.3, metadata={"help": "λ in stage 2 (paper: 0.3)."})
    stage2_start_step: int | None = field(
        default=None, metadata={"help": "Step where stage 2 starts (default: half of max_steps; 0: stage 2 only)."}
    )
    planner_epsilon: float = field(default=0.2, metadata={"help": "Clipping range of the planner's ratio."})
    planner_beta: float = field(default=0.0, metadata={"help": "KL coefficient of the planner (0 disables it)."})
    planner_entropy_coef: float = field(default=0.0, metadata={"help": "Entropy bonus of the planner."})
    # The runtime's flags, as solve, the server and evals take them (`rsim_graph.config.RuntimeConfig`).
    max_reasoning_steps: int = runtime_field("max_reasoning_steps")
    max_step_tokens: int = runtime_field("max_step_tokens")
    injection: str = runtime_field("injection")
    # TRL's name for the runtime's --max_total_tokens; its default here is the runtime's (TRL's own is 256).
    max_completion_length: int | None = field(
        default=2048, metadata={"help": "Reasoner tokens per trajectory in rollouts, all steps together (the runtime's --max_total_tokens)."}
    )
    planner_reward_weights: list[float] = field(
        default_factory=lambda: [1.0, 1.0, 1.0], metadata={"help": "Weights of R_acc, R_penalty, R_terminal (paper: 1, 1, 1)."}
    )
    repeat_terminal_reward: float = field(
        default=-1.0, metadata={"help": "R_terminal of a run ended by a verbatim repeat (default -1, as any forced end)."}
    )
    reasoner_credit: str = field(
        default="group", metadata={"help": "The reasoner's baseline: group (paper), plan (same strategy sequence) or prefix (same strategies so far, per step)."}
    )
    planner_scale_rewards: str = field(
        default="group", metadata={"help": "Divisor of the planner's centred rewards: group (std, GRPO), batch or none (Dr. GRPO)."}
    )

    planner_gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Activation checkpointing in the planner's loss pass."}
    )
    log_update_norms: bool = field(
        default=False, metadata={"help": "Log each agent's parameter-update norm per step (copies the weights; small models)."}
    )

    def __post_init__(self):
        super().__post_init__()
        for name in ("lambda_stage1", "lambda_stage2"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(
                    f"{name}={value} is outside [0, 1]: λ weights the planner's surrogate against the reasoner's, "
                    f"so set {name} between 0 (reasoner only) and 1 (planner only)"
                )
        if self.stage2_start_step is not None and self.stage2_start_step < 0:
            raise ValueError(
                f"stage2_start_step={self.stage2_start_step} is negative; use 0 to run stage 2 alone, "
                "or leave it unset to switch halfway through max_steps"
            )
        if self.ddp_find_unused_parameters:
            raise ValueError(
                "ddp_find_unused_parameters=True cannot train rSIM: the planner's parameters are used outside the "
                "reasoner's forward pass, which DDP would mark ready twice; leave it unset (the trainer sets False)"
            )
        self.ddp_find_unused_parameters = False  # both agents get a gradient in every step (see _planner_loss)
        if self.max_reasoning_steps < 2:
            raise ValueError(
                f"max_reasoning_steps={self.max_reasoning_steps} leaves the planner no choice (the last step is "
                "always the terminating one); set it to 2 or more"
            )
        if self.max_step_tokens >= self.max_completion_length:
            raise ValueError(
                f"max_step_tokens ({self.max_step_tokens}) is not below max_completion_length ({self.max_completion_length}), "
                "the tokens a whole trajectory may write, so the planner would never choose; "
                "lower max_step_tokens or raise max_completion_length"
            )
        if self.injection not in ("auto", *INJECTIONS):
            raise ValueError(f"injection={self.injection!r} is not a choice; use auto or one of {', '.join(INJECTIONS)}")
        if self.reasoner_credit not in CREDITS:
            raise ValueError(f"reasoner_credit={self.reasoner_credit!r} is not a choice; use one of {', '.join(CREDITS)}")
        if self.reasoner_credit != "group" and self.multi_objective_aggregation != "sum_then_normalize":
            raise ValueError(
                f"reasoner_credit={self.reasoner_credit!r} sums the reasoner's rewards before its baseline; "
                "use multi_objective_aggregation='sum_then_normalize', or reasoner_credit='group'"
            )
        if self.planner_scale_rewards not in SCALES:
            raise ValueError(f"planner_scale_rewards={self.planner_scale_rewards!r} is not a choice; use one of {', '.join(SCALES)}")
        if len(self.planner_reward_weights) != 3:
            raise ValueError(
                f"planner_reward_weights has {len(self.planner_reward_weights)} values; give three, "
                "for R_acc, R_penalty and R_terminal in that order"
            )
        for name in ("planner_learning_rate", "planner_epsilon", "planner_beta", "planner_entropy_coef"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} is negative; it must be 0 or more")

    def stage2_step(self, max_steps: int) -> int:
        """The first optimizer step (0-based) of stage 2 in a run of `max_steps`."""
        if self.stage2_start_step is not None:
            return self.stage2_start_step
        return max_steps // 2
