"""The session's prompts and the files they are saved in: the labels' metadata, loading a
JSON prompt file into the prompt layers (replace or add). No widgets here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io import prompts_to_dict, read_prompts_json
from ..prompt import Key, Prompt, PromptSet
from . import prompt_layers as pl
from .candidates import Candidates
from .stack import StackSpec

REPLACE, ADD = "replace", "add"


def metadata(
    spec: StackSpec, model: str | None, prompts: PromptSet, candidates: dict[Key, Candidates]
) -> dict[str, Any]:
    """What is stored with the labels: axes, video axis, model, the prompts and the chosen candidates."""
    kind = spec.axis_kind if spec.video_axis is not None else None
    return {
        "axes": spec.ome_axes,
        "video_axis": spec.video_axis,
        "image": spec.layer_name,
        "model": model,
        # the kind travels with the prompts: segment and batch then track as it was prompted
        "prompts": prompts_to_dict(list(prompts.values()), axis=spec.video_axis or 0, stack_kind=kind),
        # single clicks whose mask is not SAM 2's first choice: candidate 1 or 2 by predicted IoU
        "mask_choices": [
            {"frame": f, "object": o, "candidate": c.index} for (f, o), c in sorted(candidates.items()) if c.index
        ],
    }


def read_for(spec: StackSpec, path: str) -> list[Prompt]:
    """The prompts of a JSON prompt file, checked against the session's stack."""
    return read_prompts_json(path, axis=spec.video_axis if spec.video_axis is not None else None, shape=spec.shape)


def load_into_layers(
    points: Any, shapes: Any, spec: StackSpec, prompts: list[Prompt], mode: str, current_object: int
) -> tuple[int, tuple[int, int]]:
    """Put ``prompts`` into the layers: ``replace`` their contents or ``add`` what they lack.

    Returns (clicks and boxes added, (clicks, boxes) that replacing dropped).
    """
    if mode not in (REPLACE, ADD):
        raise ValueError(f"mode must be 'replace' or 'add', got {mode!r}")
    dropped = pl.prompts_not_in(points, shapes, prompts, spec) if mode == REPLACE else (0, 0)
    if mode == REPLACE:
        pl.clear_prompts(points, shapes)
    added = pl.add_prompts(points, shapes, prompts, spec, current_object, skip_existing=mode == ADD)
    return added, dropped


def loaded_message(path: str, mode: str, added: int, dropped: tuple[int, int]) -> str:
    """The note shown after loading a prompt file."""
    name = Path(path).name
    if mode == ADD:
        return f"added {added} prompt(s) from {name}; the others were in the layers already"
    units = ("click" if dropped[0] == 1 else "clicks", "box" if dropped[1] == 1 else "boxes")
    what = [f"{n} {unit}" for n, unit in zip(dropped, units, strict=True) if n]
    gone = f"; replaced {' and '.join(what)} that were not in it" if what else ""
    return f"loaded {added} prompt(s) from {name}{gone}"
