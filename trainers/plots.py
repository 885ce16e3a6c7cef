"""PNG plots of a run's training curves and strategy usage, from `trainer.state.log_history`."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on training machines
import matplotlib.pyplot as plt

CURVES = ("accuracy", "R_acc", "R_format", "R_follow", "R_penalty", "R_terminal", "planner_entropy", "steps_per_trajectory")


def series(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(h["step"], h[key]) for h in history if key in h]
    return [p[0] for p in points], [p[1] for p in points]


def plot_training(history: list[dict], out_dir: str | Path, *, title: str = "rSIM training") -> list[Path]:
    """Write `training_curves.png` and `strategy_usage.png` (when the history has them); returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    curves = [k for k in CURVES if series(history, k)[0]]
    if curves:
        fig, axes = plt.subplots(2, (len(curves) + 1) // 2, figsize=(3.2 * ((len(curves) + 1) // 2), 5.5), squeeze=False)
        for ax, key in zip(axes.flat, curves, strict=False):
            ax.plot(*series(history, key))
            ax.set_title(key, fontsize=9)
            ax.set_xlabel("step", fontsize=8)
        for ax in list(axes.flat)[len(curves) :]:
            ax.axis("off")
        fig.suptitle(title)
        fig.tight_layout()
        written.append(out_dir / "training_curves.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    shares = sorted({k for h in history for k in h if k.startswith("strategy/")})
    if shares:
        steps = series(history, shares[0])[0]
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.stackplot(steps, [series(history, k)[1] for k in shares], labels=[k.removeprefix("strategy/") for k in shares])
        ax.set_xlabel("step")
        ax.set_ylabel("share of steps")
        ax.set_ylim(0, 1)
        ax.set_title("Strategy usage during training")
        ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize=8)
        fig.tight_layout()
        written.append(out_dir / "strategy_usage.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written
