"""Read the CSV files napari writes for Points and Shapes layers as prompts.

napari 0.9's builtin writer (``layer.save("x.csv")``, ``File > Save Selected Layers``) writes

- Points: ``index,axis-0,...,axis-{D-1}`` then one column per feature, e.g.
  ``index,axis-0,axis-1,axis-2,object,positive``. When every column is numeric the whole
  table is written as floats (``0.0,2.0,10.5,20.25,1.0,1.0``, so ``positive`` is ``1.0`` or
  ``0.0``); when a feature is text it is written as ``0,2.0,10.5,20.25,1,True``.
- Shapes: ``index,shape-type,vertex-index,axis-0,...`` with one row per vertex and no
  features at all.

Coordinates are napari's data coordinates of the layer, ``(frame, row, col)`` for a stack.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..prompt import Prompt, clip_box, frame_and_plane, frame_outside, napari_to_xy, normalise_axis, outside

_AXIS = re.compile(r"axis-(\d+)$")


@dataclass(frozen=True)
class _Row:
    line: int  # line number in the file (the header is line 1)
    cells: dict[str, str]


def _read_table(path: str | PathLike[str]) -> tuple[list[str], list[_Row]]:
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            if not header:
                raise InputError(f"{p}: the file is empty; expected a napari CSV with a header row")
            twice = [h for i, h in enumerate(header) if h and h in header[:i]]
            if twice:  # each row is read into a dict: the later column would silently win
                raise InputError(f"{p}: the header names column {twice[0]!r} twice")
            rows = []
            for cells in reader:
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    raise InputError(
                        f"{p}, line {reader.line_num}: {len(cells)} values but the header has {len(header)} columns"
                    )
                rows.append(_Row(reader.line_num, dict(zip(header, (c.strip() for c in cells), strict=True))))
    except FileNotFoundError:
        raise InputError(f"prompt file not found: {p}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{p}: cannot read the CSV file ({e})") from None
    return header, rows


def _coordinate_columns(path: Path, header: list[str], ndim: int | None) -> list[str]:
    found = sorted(int(m.group(1)) for h in header if (m := _AXIS.match(h)))
    if not found:
        raise InputError(f"{path}: no 'axis-0', 'axis-1', ... columns; is this a CSV saved from a napari layer?")
    if found != list(range(len(found))):
        raise InputError(f"{path}: coordinate columns must be axis-0 ... axis-{len(found) - 1}, got {found}")
    if len(found) not in (2, 3):
        raise InputError(
            f"{path}: {len(found)}-D coordinates; napari-sam2 reads 2-D (y, x) or 3-D (frame, y, x) prompts"
        )
    if ndim is not None and len(found) != ndim:
        raise InputError(f"{path}: the prompts are {len(found)}-D but the image is {ndim}-D")
    return [f"axis-{i}" for i in found]


def _number(path: Path, row: _Row, column: str) -> float:
    text = row.cells[column]
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{path}, line {row.line}: {column} must be a number, got {text!r}") from None
    if not np.isfinite(value):
        raise InputError(f"{path}, line {row.line}: {column} is {text!r}; coordinates must be finite")
    return value


def _index(row: _Row) -> str:
    """napari's index column, ``3`` rather than the ``3.0`` of an all-numeric table."""
    text = row.cells["index"]
    try:
        return str(int(float(text))) if float(text).is_integer() else text
    except ValueError:
        return text


def _object_id(path: Path, row: _Row) -> int:
    value = _number(path, row, "object")
    if value != int(value) or value < 1:
        raise InputError(
            f"{path}, line {row.line}: object must be a whole number >= 1 (0 is background), "
            f"got {row.cells['object']!r}"
        )
    return int(value)


_TRUE = {"true", "1", "1.0", "yes"}
_FALSE = {"false", "0", "0.0", "no"}


def _positive(path: Path, row: _Row) -> int:
    text = row.cells["positive"].lower()
    if text in _TRUE:
        return 1
    if text in _FALSE:
        return 0
    raise InputError(f"{path}, line {row.line}: positive must be True/False or 1/0, got {row.cells['positive']!r}")


def _locate(
    path: Path, row: _Row, axes: list[str], axis: int, shape: Any, what: str, *, plane: bool = True
) -> tuple[int, float, float]:
    """(frame, y, x) of one row; checks it against ``shape`` when given (y, x only if ``plane``)."""
    values = [_number(path, row, c) for c in axes]
    if len(values) == 2:
        frame_f, (y, x) = 0.0, values
    else:
        ax = normalise_axis(axis, 3)
        frame_f = values[ax]
        y, x = (v for i, v in enumerate(values) if i != ax)
    frame = int(np.rint(frame_f))
    if frame < 0:
        raise InputError(f"{path}, line {row.line} ({what}): frame {frame_f:g} is negative")
    if shape is not None:
        if len(shape) != len(values):
            raise InputError(f"{path}: the prompts are {len(values)}-D but the image shape is {tuple(shape)}")
        n_frames, hw = frame_and_plane(shape, axis)
        why = outside(frame, x, y, n_frames, hw) if plane else frame_outside(frame, n_frames)
        if why is not None:
            raise InputError(f"{path}, line {row.line} ({what}): {why}")
    return frame, y, x


def read_points_csv(
    path: str | PathLike[str], *, axis: int = 0, ndim: int | None = None, shape: Any = None
) -> list[Prompt]:
    """Read the CSV napari writes for a Points layer as click prompts.

    Parameters
    ----------
    path : path-like
        ``index,axis-0,axis-1[,axis-2],...`` plus optional feature columns ``object``
        (object id, default 1) and ``positive`` (``True``/``False`` or ``1``/``0``, default
        positive).
    axis : int
        Which coordinate column is the frame index for 3-D points; the other two are
        ``(y, x)`` in that order. 2-D points are all on frame 0.
    ndim : int, optional
        The image's number of dimensions; an error if the file has another.
    shape : tuple of int, optional
        The image's shape (in the same axis order as the file); points outside are errors.

    Returns
    -------
    list of Prompt
        One prompt per (frame, object), sorted by frame then object id; points keep file order.
    """
    p = Path(path)
    header, rows = _read_table(p)
    if "shape-type" in header:
        raise InputError(f"{p} is a napari Shapes CSV, not a Points CSV; read it as boxes")
    axes = _coordinate_columns(p, header, ndim)
    groups: dict[tuple[int, int], tuple[list[tuple[float, float]], list[int]]] = {}
    for row in rows:
        what = f"point {_index(row)}" if "index" in row.cells else "point"
        frame, y, x = _locate(p, row, axes, axis, shape, what)
        obj = _object_id(p, row) if "object" in header else 1
        label = _positive(p, row) if "positive" in header else 1
        rc, labels = groups.setdefault((frame, obj), ([], []))
        rc.append((y, x))
        labels.append(label)
    return [
        Prompt(frame=frame, obj_id=obj, points_xy=napari_to_xy(rc), labels=np.array(labels), box=None)
        for (frame, obj), (rc, labels) in sorted(groups.items())
    ]


def read_shapes_csv(path: str | PathLike[str], *, axis: int = 0, shape: Any = None) -> list[Prompt]:
    """Read the CSV napari writes for a Shapes layer: each rectangle is a box prompt.

    Parameters
    ----------
    path : path-like
        ``index,shape-type,vertex-index,axis-0,...``, one row per vertex. Every shape must be
        a ``rectangle`` (an error names the first other one). A rectangle's box is the
        min/max of its vertices on the two image axes; all its vertices must lie on one frame.
    axis : int
        Which coordinate column is the frame index for 3-D shapes.
    shape : tuple of int, optional
        The image's shape: a frame outside it is an error; a box reaching past the image
        edge is clipped to it, and one wholly outside is an error.

    Returns
    -------
    list of Prompt
        One box prompt per rectangle, sorted by frame then object id. napari does not save
        shape features, so rectangles get object ids 1, 2, 3, ... in file order, unless the
        file has an ``object`` column (added by hand or another tool), which is then used.
    """
    p = Path(path)
    header, rows = _read_table(p)
    if "shape-type" not in header or "index" not in header:
        raise InputError(f"{p}: not a napari Shapes CSV (no 'index' and 'shape-type' columns)")
    axes = _coordinate_columns(p, header, None)
    shapes: dict[str, list[_Row]] = {}
    for row in rows:
        shapes.setdefault(row.cells["index"], []).append(row)
    prompts: dict[tuple[int, int], tuple[str, Prompt]] = {}
    for order, (index, vertices) in enumerate(shapes.items(), start=1):
        first = vertices[0]
        kind = first.cells["shape-type"]
        if kind != "rectangle":
            raise InputError(
                f"{p}, line {first.line} (shape {index}): a {kind!r} is not a box prompt; "
                "only rectangles are (delete it or draw it as a rectangle)"
            )
        where = [_locate(p, v, axes, axis, shape, f"shape {index}", plane=False) for v in vertices]
        frames = {f for f, _, _ in where}
        if len(frames) != 1:
            raise InputError(f"{p}, line {first.line} (shape {index}): the rectangle spans frames {sorted(frames)}")
        obj_ids = {_object_id(p, v) for v in vertices} if "object" in header else {order}
        if len(obj_ids) != 1:
            raise InputError(f"{p}, line {first.line} (shape {index}): its vertices have different objects")
        frame, obj = frames.pop(), obj_ids.pop()
        xy = napari_to_xy([(y, x) for _, y, x in where])
        box = np.concatenate([xy.min(axis=0), xy.max(axis=0)])  # x0, y0, x1, y1
        if not (box[0] < box[2] and box[1] < box[3]):
            raise InputError(f"{p}, line {first.line} (shape {index}): the rectangle has zero width or height")
        if shape is not None:
            box = clip_box(box, frame_and_plane(shape, axis)[1])
            if box is None:
                raise InputError(f"{p}, line {first.line} (shape {index}): the rectangle lies outside the image")
        if (frame, obj) in prompts:
            raise InputError(
                f"{p}, line {first.line} (shape {index}): a second box for object {obj} on frame {frame} "
                f"(the first is shape {prompts[frame, obj][0]})"
            )
        prompts[frame, obj] = (index, Prompt(frame=frame, obj_id=obj, points_xy=None, labels=None, box=box))
    return [prompt for _, (_, prompt) in sorted(prompts.items())]
