"""The task interface that ArithWorld, GSM8K and MATH share: a question, a gold answer and a grader."""

from __future__ import annotations

from dataclasses import dataclass, field

from rsim_graph.scoring.grading import extract_choice, grade, grade_choice


@dataclass
class Problem:
    """One problem.

    Args:
        question (`str`): what the model is asked.
        answer (`str`): the gold answer, already extracted (e.g. `"187"`); the reference solution for code.
        meta (`dict`, *optional*): task-specific data (ArithWorld keeps the operations here, HumanEval its tests).
        kind (`str`, *optional*, defaults to `"latex"`): the answer type, `numeric`, `latex`, `auto`, `choice` or `code`.
    """

    question: str
    answer: str
    meta: dict = field(default_factory=dict)
    kind: str = "latex"

    def grade(self, prediction: str | None) -> bool:
        return grade(prediction, self.answer)

    def grade_output(self, answer: str | None, text: str) -> bool:
        """Grade a reply: its extracted `answer` for math and choices, its full `text` for code (pass@1).

        `numeric`, `latex` and `auto` (the default of custom files and hub datasets) are all graded by math-verify
        (`rsim_graph.scoring.grading.grade`); `choice` by the option letter; `code` by running the task's tests.
        """
        if self.kind == "choice":
            return grade_choice(answer if answer is not None else extract_choice(text), self.answer)
        if self.kind == "code":
            from rsim_graph.scoring.code_exec import (
                extract_code,
                humaneval_program,
                run_program,
            )

            if self.meta.get("test") and self.meta.get("entry_point"):
                program = humaneval_program(text, self.meta.get("prompt") or "", self.meta["test"], self.meta["entry_point"])
            else:  # no tests (CodeAlpaca): the program must at least run cleanly
                program = extract_code(text)
            return run_program(program)[0]
        return grade(answer, self.answer)
