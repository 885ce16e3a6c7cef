"""The task interface that ArithWorld, GSM8K and MATH share: a question, a gold answer and a grader."""

from __future__ import annotations

from dataclasses import dataclass, field

from rsim_graph.grading import grade


@dataclass
class Problem:
    """One problem.

    Args:
        question (`str`): what the model is asked.
        answer (`str`): the gold answer, already extracted (e.g. `"187"`).
        meta (`dict`, *optional*): task-specific data (ArithWorld keeps the operations here).
    """

    question: str
    answer: str
    meta: dict = field(default_factory=dict)

    def grade(self, prediction: str | None) -> bool:
        return grade(prediction, self.answer)
