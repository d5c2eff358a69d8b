"""How results are written and printed: compact JSON (floats rounded, lists of numbers on
one line) and numbers in tables. The benchmarks and factory/ share these."""

from __future__ import annotations

import json
import re


def rounded(x, digits: int = 4):
    """``x`` with every float rounded (keeps the JSON small)."""
    if isinstance(x, float):
        return round(x, digits)
    if isinstance(x, dict):
        return {k: rounded(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [rounded(v, digits) for v in x]
    return x


def dumps(report: dict) -> str:
    """Indented JSON with lists of numbers (and lists of such lists) on one line."""

    def one_line(m: re.Match) -> str:
        return re.sub(r"\s+", "", m.group(0)).replace(",", ", ")

    text = json.dumps(rounded(report), indent=1)
    text = re.sub(r"\[[^\[\]{}\"]*\]", one_line, text)
    return re.sub(r"\[(\s*\[[^\[\]{}\"]*\],?)+\s*\]", one_line, text) + "\n"


def fmt(x: float | None) -> str:
    return "  -  " if x is None else f"{x:.3f}"
