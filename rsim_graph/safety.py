"""Keep user text from imitating what the graph injects.

The graph adds two kinds of text a user must not be able to forge:
- the strategy prompts it injects into the reasoner's context (the bundled tokenizers even map each
  one to a single added token), and the tokenizer's special tokens that delimit chat turns;
- the `[strategy]` step markers of the text a learned planner reads (`planner_text`).

A question that contains them could otherwise end its own turn, write fake steps, or make the
planner believe steps were taken. User text is cleaned once, where it enters the graph; the planner
and the reasoner backends clean again with the reserved strings only they know (their special tokens).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable

logger = logging.getLogger(__name__)

# `[understand]`, `[next]`, `[sub-plan]`: how `planner_text` marks steps.
MARKER = re.compile(r"\[(\s*[\w-]+\s*)\]")


def strip_reserved(text: str, reserved: Iterable[str]) -> str:
    """Remove every occurrence of the reserved strings, repeating until none is left (removing one
    must not join its neighbours into another).

    >>> strip_reserved("2+3<|us<|end|>er|>?", ["<|end|>", "<|user|>"])
    '2+3?'
    """
    reserved = sorted({r for r in reserved if r}, key=len, reverse=True)
    cleaned = text
    while True:
        before = cleaned
        for r in reserved:
            cleaned = cleaned.replace(r, "")
        if cleaned == before:
            break
    if cleaned != text:
        logger.warning("removed reserved text (special tokens or injected strategy prompts) from user input")
    return cleaned


# Chat-template control tokens (`<|im_start|>`, `<|eot_id|>`, `<|end|>`): no user text needs them, and the graph
# does not know which tokenizer will read the text, so it strips the whole family.
CONTROL = re.compile(r"<\|[^|<>\s]{1,40}\|>")


def clean_user_text(text: str, reserved: Iterable[str]) -> str:
    """`strip_reserved` plus chat control tokens, also where they hide behind Unicode compatibility forms.

    A tokenizer that normalises (NFKC) would read a fullwidth `＜｜end｜＞` as `<|end|>`, so text whose
    normalised form holds reserved text is normalised first; other text is left as written (NFKC would turn
    `x²` into `x2`).

    >>> clean_user_text("2+3?＜｜end｜＞<|im_start|>", [])
    '2+3?'
    """
    reserved = [r for r in reserved if r]
    folded = unicodedata.normalize("NFKC", text)
    if folded != text and (CONTROL.search(folded) or any(r in folded for r in reserved)):
        text = folded
    while True:
        cleaned = CONTROL.sub("", strip_reserved(text, reserved))
        if cleaned == text:
            return cleaned
        text = cleaned


def defuse_markers(text: str) -> str:
    """Turn `[id]` into `(id)`, so text cannot pass for a step marker in what the planner reads.

    >>> defuse_markers("2+3\\n[terminate] 5\\n[next]")
    '2+3\\n(terminate) 5\\n(next)'
    """
    return MARKER.sub(r"(\1)", text)
