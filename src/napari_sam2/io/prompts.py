"""Prompts: the :class:`Prompt` dataclass and the files they come from.

- napari Points CSV (clicks; features ``object`` and ``positive``): :func:`read_points_csv`
- napari Shapes CSV (rectangles are boxes): :func:`read_shapes_csv`
- napari-sam2 JSON (points and boxes per object): :func:`read_prompts_json`,
  :func:`write_prompts_json`, format in ``docs/prompts.md``
- :func:`read_prompts` picks one of the readers from the file.

Every problem with a file raises :class:`napari_sam2.errors.InputError` naming the file and
the line (CSV) or field (JSON). napari ``(row, col)`` coordinates become SAM 2 ``(x, y)``
only in :func:`napari_to_xy` / :func:`xy_to_napari`.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

from ..errors import InputError
from ._napari_csv import read_points_csv, read_shapes_csv
from ..prompt import Prompt, PromptSet, merge_prompts, napari_to_xy, xy_to_napari
from ._prompt_json import prompts_from_dict, prompts_to_dict, read_prompts_json, read_stack_kind, write_prompts_json

__all__ = [
    "Prompt",
    "PromptSet",
    "merge_prompts",
    "napari_to_xy",
    "prompts_from_dict",
    "prompts_to_dict",
    "read_points_csv",
    "read_prompts",
    "read_prompts_json",
    "read_stack_kind",
    "read_shapes_csv",
    "write_prompts_json",
    "xy_to_napari",
]


def _is_shapes_csv(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8-sig") as f:
            return "shape-type" in f.readline()
    except FileNotFoundError:
        raise InputError(f"prompt file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the file ({e})") from None


def read_prompts(
    path: str | PathLike[str], *, axis: int | None = None, shape: Any = None, ndim: int | None = None
) -> list[Prompt]:
    """Read prompts from a napari Points or Shapes CSV, or a napari-sam2 JSON file.

    Parameters
    ----------
    path : path-like
        ``.csv`` (a Points CSV, or a Shapes CSV when its header has ``shape-type``) or ``.json``.
    axis : int, optional
        The video axis. CSV files default to 0; a JSON file records its own axis, and giving
        another here is an error.
    shape : tuple of int, optional
        The stack's shape in napari axis order; prompts outside it are errors.
    ndim : int, optional
        The image's number of dimensions (checked for Points CSV files).

    Returns
    -------
    list of Prompt
        One prompt per (frame, object), sorted by frame then object id.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".json":
        return read_prompts_json(p, axis=axis, shape=shape)
    if suffix == ".csv":
        if _is_shapes_csv(p):
            return read_shapes_csv(p, axis=0 if axis is None else axis, shape=shape)
        return read_points_csv(p, axis=0 if axis is None else axis, ndim=ndim, shape=shape)
    raise InputError(
        f"{p}: unknown prompt file type {p.suffix!r}; expected .csv (a napari Points or Shapes layer) or .json"
    )
