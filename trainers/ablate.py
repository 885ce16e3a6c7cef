"""`python -m trainers.ablate`: the ablation table of the leader-follower trainer, over seeds, resumable.

    python -m trainers.ablate                                   # every row, seeds 0 and 1
    python -m trainers.ablate --rows full --seeds 0,1,2         # the default recipe over three seeds
    python -m trainers.ablate --table                           # print the table from what is done

Each row is the default recipe (`trainers/recipes/arith_tiny.yaml`) with one change, run as its own
`python -m trainers.marl` process per seed. A finished run's `results.json` (plus its training log) is
copied to `--results_dir/<row>/seed<k>.json`; runs found there are skipped, so the command can be
stopped and run again, across sessions, and a killed run restarts from its last checkpoint. The table
reports greedy accuracy on the held-out test problems (mean ± std over seeds) of the run's final
planner and reasoner together, the reasoner alone, and the most-used strategy's share of all steps.

Rows:
- `full`: rSIM as the recipe runs it (λ 0.7 then 0.3, warm-up, all reward terms, the paper's group baseline).
- `plan-credit`: the reasoner's GRPO baseline is the mean of its group's trajectories with the same strategy sequence.
- `planner-std`: the planner's centred rewards are divided by their group's std (GRPO's), not left as they are.
- `no-stage-switch`: λ stays 0.7 (stage 1) for the whole run.
- `no-penalty`: the planner's R_penalty weighted 0.
- `no-follow`: the reasoner's R_follow weighted 0.
- `no-warmup`: `--warmup false`.
- `planner-only`: the reasoner is frozen (learning rate 0, no warm-up).
- `reasoner-only`: the planner is frozen at its initialisation (learning rate 0).
- `grpo`: plain GRPO on the reasoner (`python -m trainers.grpo`), for as many seconds as the `full` run of
  the same seed trained (its `train_seconds`: the training loop with its validations, in its last
  session if it was resumed); its accuracy is the reasoner alone, as it has no planner.

`--reasoner_credit prefix` is not a row: its first run was stopped after 12 steps, with 54-96% of its
advantage still the planner's part (docs/training.md, "Results of the default run"); `--rows` takes only the above.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
from pathlib import Path

from trainers.cli import print_report

logger = logging.getLogger(__name__)

ROWS: dict[str, list[str]] = {
    "full": [],
    "plan-credit": ["--reasoner_credit", "plan"],
    "planner-std": ["--planner_scale_rewards", "group"],
    "no-stage-switch": ["--stage2_start_step", "1000000000"],
    "no-penalty": ["--planner_reward_weights", "2.0", "0.0", "0.5"],  # the recipe's weights with R_penalty's zeroed
    "no-follow": ["--reward_weights", "1.0", "1.0", "0.0"],  # R_acc, R_format, R_follow
    "no-warmup": ["--warmup", "false"],
    "planner-only": ["--learning_rate", "0", "--warmup", "false"],
    "reasoner-only": ["--planner_learning_rate", "0"],
    "grpo": [],
}
ROOT = Path(__file__).resolve().parents[1]


def result_path(results_dir: Path, row: str, seed: int) -> Path:
    return results_dir / row / f"seed{seed}.json"


def command(row: str, seed: int, out: Path, results_dir: Path, extra: list[str]) -> list[str]:
    if row == "grpo":
        full = result_path(results_dir, "full", seed)
        if not full.is_file():
            raise FileNotFoundError(f"the grpo row trains as long as row full did for seed {seed}; run --rows full --seeds {seed} first")
        seconds = json.loads(full.read_text())["train_seconds"]
        # The row's own time budget comes last, so that an --max_train_seconds meant for the MARL rows cannot override it.
        return [sys.executable, "-m", "trainers.grpo", "--seed", str(seed), "--output_dir", str(out), *extra, "--max_train_seconds", str(seconds), "--max_steps", "100000"]
    resume = ["--resume_from_checkpoint", "true"] if any(out.glob("checkpoint-*")) else []
    return [sys.executable, "-m", "trainers.marl", "--seed", str(seed), "--output_dir", str(out), *ROWS[row], *resume, *extra]


def run(row: str, seed: int, output_dir: Path, results_dir: Path, extra: list[str]) -> None:
    out = output_dir / row / f"seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    cmd = command(row, seed, out, results_dir, extra)
    logger.info("%s seed %d: %s", row, seed, " ".join(cmd[1:]))
    with open(out.with_suffix(".log"), "a") as log:
        done = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{row} seed {seed} failed (exit {done.returncode}); see {out.with_suffix('.log')}")
    save_record(row, seed, out, results_dir, " ".join(["python", *cmd[1:]]))


def save_record(row: str, seed: int, out: Path, results_dir: Path, cmd: str) -> None:
    """Copy a finished run's `results.json`, with the command and a slim training log, to the results directory."""
    record = json.loads((out / "results.json").read_text())
    states = sorted(out.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    history = json.loads(states[-1].read_text())["log_history"] if states else []
    keep = ("step", "accuracy", "val_accuracy", "lambda", "learning_rate", "planner_learning_rate", "update_norm/", "R_", "steps_per_trajectory", "strategy/", "planner_entropy")
    history = [{k: v for k, v in h.items() if k.startswith(keep)} for h in history]
    record.update(row=row, seed=seed, command=cmd, log_history=history)
    path = result_path(results_dir, row, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:  # one seed has no spread to show
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.fmean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def table(results_dir: Path) -> str:
    lines = [
        "| Row | seeds | rSIM (planner + reasoner) | reasoner alone (ZeroCoT) | most-used strategy share | best - last validation | steps | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in ROWS:
        records = [json.loads(p.read_text()) for p in sorted((results_dir / row).glob("seed*.json"))]
        if not records:
            lines.append(f"| {row} | 0 | not run | | | | | |")
            continue
        # How far the last validated pair fell below the best one (0: the run held what it learned).
        drops = [max(v["accuracy"] for v in r["validation"]) - r["validation"][-1]["accuracy"] for r in records if r.get("validation")]
        after = [r["after"] for r in records]
        rsim = [a["rSIM planner"]["accuracy"] for a in after if "rSIM planner" in a]
        alone = [a["ZeroCoT"]["accuracy"] for a in after]
        share = [a["rSIM planner"]["top_share"] for a in after if "rSIM planner" in a]
        top = sorted({a["rSIM planner"]["top_strategy"] for a in after if "rSIM planner" in a})
        steps = statistics.fmean(r["steps"] for r in records)
        secs = statistics.fmean(r["train_seconds"] for r in records)
        share_text = f"{mean_std(share)} ({', '.join(top)})" if share else "-"
        lines.append(f"| {row} | {len(records)} | {mean_std(rsim)} | {mean_std(alone)} | {share_text} | {mean_std(drops)} | {steps:.0f} | {secs:.0f} |")
    return "\n".join(lines)


def method_table(results_dir: Path, row: str = "full") -> str:
    """Every method of one row's before/after evaluation, mean ± std over its recorded seeds."""
    records = [json.loads(p.read_text()) for p in sorted((results_dir / row).glob("seed*.json"))]
    if not records:
        return f"(row {row}: no recorded runs)"
    seeds = ", ".join(str(r["seed"]) for r in records)
    lines = [f"| Method (row {row}, seeds {seeds}) | before | after | one deep-think per operation |", "|---|---|---|---|"]
    for label in records[0]["after"]:
        before = [r["before"][label]["accuracy"] for r in records if label in r.get("before", {})]
        after = [r["after"][label]["accuracy"] for r in records if label in r["after"]]
        # The heuristic planner's rule (recorded since issue 23): how often the plan's deep-thinks match the operations.
        rule = [r["after"][label].get("deep_think_per_op") for r in records if r["after"].get(label, {}).get("distinct_strategies")]
        rule = [x for x in rule if x is not None]
        lines.append(f"| {label} | {mean_std(before)} | {mean_std(after)} | {mean_std(rule)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    """Run what is asked and not yet recorded; returns the tables. Bad rows, seeds or runs raise with the fix."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(prog="python -m trainers.ablate", description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated rows (default: all): {', '.join(ROWS)}")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds (default: 0,1)")
    parser.add_argument("--output_dir", default="outputs/ablation", help="where the runs write their checkpoints and logs")
    parser.add_argument("--results_dir", default=str(ROOT / "trainers" / "results" / "ablation"), help="where finished runs are recorded")
    parser.add_argument("--table", action="store_true", help="only print the table of what is recorded")
    args, extra = parser.parse_known_args(argv)
    results_dir = Path(args.results_dir)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise ValueError(f"unknown row {unknown[0]!r}; choose from {', '.join(ROWS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if not args.table:
        for row in sorted(rows, key=lambda r: r == "grpo"):  # grpo needs the full row's seconds
            for seed in seeds:
                if result_path(results_dir, row, seed).is_file():
                    logger.info("%s seed %d: recorded, skipped", row, seed)
                    continue
                run(row, seed, Path(args.output_dir), results_dir, extra)
    report = table(results_dir) + "\n\n" + method_table(results_dir)
    (results_dir / "ablation.md").parent.mkdir(parents=True, exist_ok=True)
    (results_dir / "ablation.md").write_text(report + "\n")
    return report


def cli(argv: list[str] | None = None) -> int:
    return print_report(lambda: main(argv), also=(RuntimeError,))  # a failed row run


if __name__ == "__main__":
    sys.exit(cli())
