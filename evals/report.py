"""The paper's tables and two plots from evaluation summaries.

Tables follow the paper's layout: Model | Planner | one score column per dataset | #Strategy, and a
token table of mean ± standard deviation of reasoner tokens per problem.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rsim_graph.evaluation.runner import Summary

# (model, method) -> task -> Summary
Results = dict[tuple[str, str], dict[str, Summary]]


def score_table(results: Results, tasks: list[str]) -> str:
    rows = ["| Model | Planner | " + " | ".join(tasks) + " | #Strategy |", "|---|---|" + "---|" * (len(tasks) + 1)]
    for (model, method), by_task in results.items():
        scores = [f"{100 * by_task[t].accuracy:.1f}" if t in by_task else "-" for t in tasks]
        used = [by_task[t].mean_strategies for t in tasks if t in by_task]
        rows.append(f"| {model} | {method} | " + " | ".join(scores) + f" | {sum(used) / max(1, len(used)):.2f} |")
    return "\n".join(rows)


def token_table(results: Results, tasks: list[str]) -> str:
    rows = ["| Model | Planner | " + " | ".join(tasks) + " |", "|---|---|" + "---|" * len(tasks)]
    for (model, method), by_task in results.items():
        cells = [f"{by_task[t].mean_tokens:.0f} ± {by_task[t].std_tokens:.0f}" if t in by_task else "-" for t in tasks]
        rows.append(f"| {model} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def plot(results: Results, records: dict[tuple[str, str, str], list[dict]], library_ids: list[str], out_dir: Path) -> list[Path]:
    """`accuracy_vs_strategies.png` (one point per method and dataset) and `strategy_usage.png`
    (share of steps under each strategy, per dataset and planner)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for (model, method), by_task in results.items():
        xs = [s.mean_strategies for s in by_task.values()]
        ys = [100 * s.accuracy for s in by_task.values()]
        ax.scatter(xs, ys, label=method)
        for task, x, y in zip(by_task, xs, ys, strict=True):
            ax.annotate(task, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("distinct strategies per problem")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out_dir / "accuracy_vs_strategies.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    planned = {k: v for k, v in records.items() if any(r["strategies"] for r in v)}
    if planned:
        tasks = sorted({t for _, _, t in planned})
        fig, axes = plt.subplots(len(tasks), 1, figsize=(8, 2.6 * len(tasks)), squeeze=False)
        for ax, task in zip(axes[:, 0], tasks, strict=True):
            keys = [k for k in planned if k[2] == task]
            width = 0.8 / len(keys)
            for j, key in enumerate(keys):
                counts = Counter(s for r in planned[key] for s in r["strategies"])
                total = max(1, sum(counts.values()))
                ax.bar([i + j * width for i in range(len(library_ids))], [counts[s] / total for s in library_ids], width, label=key[1])
            ax.set_xticks([i + 0.4 - width / 2 for i in range(len(library_ids))], library_ids, rotation=30, fontsize=7)
            ax.set_ylabel("share of steps")
            ax.set_title(task, fontsize=9)
            ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(out_dir / "strategy_usage.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths
