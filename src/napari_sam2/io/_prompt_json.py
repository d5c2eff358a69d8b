"""napari-sam2's JSON prompt format (version 1), documented in ``docs/prompts.md``.

::

    {"version": 1, "axis": 0, "stack_kind": "t",
     "objects": [{"id": 1,
                  "points": [{"frame": 0, "x": 12.5, "y": 40, "positive": true}],
                  "boxes": [{"frame": 0, "x0": 5, "y0": 30, "x1": 20, "y1": 52}]}]}

``x``/``y`` are image pixels (x = column, y = row); ``frame`` indexes the stack along
``axis``. ``stack_kind`` (optional) says what that axis is: ``"t"`` a time-lapse, ``"z"`` a z-stack. The same dictionary is stored in the metadata of the labels we write.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ._files import write_text_atomically
from ..prompt import Prompt, clip_box, frame_and_plane, frame_outside, merge_prompts, outside

FORMAT_VERSION = 1

_TOP = {"version", "axis", "stack_kind", "objects"}
STACK_KINDS = ("t", "z")
_OBJECT = {"id", "points", "boxes"}
_POINT = {"frame", "x", "y", "positive"}
_BOX = {"frame", "x0", "y0", "x1", "y1"}


def _short(v: np.floating) -> float:
    """The shortest decimal that reads back as the same float32 (40.1, not 40.099998...)."""
    return float(str(np.float32(v)))


def prompts_to_dict(prompts: Iterable[Prompt], *, axis: int = 0, stack_kind: str | None = None) -> dict[str, Any]:
    """The JSON-ready dictionary of ``prompts`` (objects sorted by id).

    ``stack_kind`` (``"t"`` or ``"z"``), if given, is recorded. Mask prompts have no JSON
    form and raise :class:`InputError`.
    """
    if stack_kind is not None and stack_kind not in STACK_KINDS:
        raise InputError(f"stack_kind must be 't' (time-lapse) or 'z' (z-stack), got {stack_kind!r}")
    objects: dict[int, dict[str, list[dict[str, Any]]]] = {}
    for p in merge_prompts(prompts):
        if p.mask is not None:
            raise InputError(f"the mask prompt of object {p.obj_id} on frame {p.frame} cannot be saved as JSON")
        obj = objects.setdefault(p.obj_id, {"points": [], "boxes": []})
        if p.points_xy is not None:
            for (x, y), label in zip(p.points_xy, p.labels, strict=True):
                obj["points"].append({"frame": p.frame, "x": _short(x), "y": _short(y), "positive": bool(label)})
        if p.box is not None:
            x0, y0, x1, y1 = (_short(v) for v in p.box)
            obj["boxes"].append({"frame": p.frame, "x0": x0, "y0": y0, "x1": x1, "y1": y1})
    return {
        "version": FORMAT_VERSION,
        "axis": int(axis),
        **({"stack_kind": stack_kind} if stack_kind is not None else {}),
        "objects": [{"id": i, **objects[i]} for i in sorted(objects)],
    }


class _Reader:
    """Walks a decoded JSON document, naming the field in every error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> InputError:
        return InputError(f"{self.source}: {where}: {message}" if where else f"{self.source}: {message}")

    def mapping(self, value: Any, where: str, allowed: set[str], required: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected an object {{...}}, got {type(value).__name__}")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.fail(where, f"unknown field {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
        missing = sorted(required - set(value))
        if missing:
            raise self.fail(where, f"missing field {missing[0]!r}")
        return value

    def integer(self, value: Any, where: str, minimum: int, maximum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"expected a whole number, got {value!r}")
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise self.fail(where, f"must be {bounds}, got {value}")
        return value

    def number(self, value: Any, where: str) -> float:
        try:
            number = float(value) if not isinstance(value, bool) and isinstance(value, (int, float)) else None
        except OverflowError:  # an integer beyond float range
            number = float("inf")
        if number is None or not np.isfinite(number):
            text = repr(value)
            raise self.fail(where, f"expected a finite number, got {text if len(text) <= 40 else text[:37] + '...'}")
        return number

    def items(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list [...], got {type(value).__name__}")
        return value


def prompts_from_dict(doc: Any, *, source: str = "prompts", axis: int | None = None, shape: Any = None) -> list[Prompt]:
    """Prompts from a decoded JSON document (see :func:`prompts_to_dict`).

    Parameters
    ----------
    doc : dict
        The decoded document.
    source : str
        Named in error messages (the file name).
    axis : int, optional
        The video axis the caller uses; an error if the document says another.
    shape : tuple of int, optional
        The stack's shape (napari axis order): points or frames outside it are errors; boxes
        reaching past the image edge are clipped to it.

    Returns
    -------
    list of Prompt
        One prompt per (frame, object), sorted by frame then object id.
    """
    r = _Reader(source)
    top = r.mapping(doc, "", _TOP, {"version", "objects"})
    if top["version"] != FORMAT_VERSION:
        raise r.fail("version", f"unsupported version {top['version']!r} (this napari-sam2 reads {FORMAT_VERSION})")
    if top.get("stack_kind", "t") not in STACK_KINDS:
        raise r.fail("stack_kind", f"expected 't' (a time-lapse) or 'z' (a z-stack), got {top['stack_kind']!r}")
    doc_axis = r.integer(top.get("axis", 0), "axis", -3, 2) % 3
    if axis is not None and doc_axis != axis % 3:
        raise r.fail("axis", f"the prompts were made with video axis {doc_axis}, but axis {axis} was asked for")
    n_frames, hw = frame_and_plane(shape, doc_axis) if shape is not None else (None, None)
    prompts: list[Prompt] = []
    seen: set[int] = set()
    for i, entry in enumerate(r.items(top["objects"], "objects")):
        where = f"objects[{i}]"
        obj = r.mapping(entry, where, _OBJECT, {"id"})
        obj_id = r.integer(obj["id"], f"{where}.id", 1)
        if obj_id in seen:
            raise r.fail(f"{where}.id", f"object id {obj_id} appears twice")
        seen.add(obj_id)
        clicks: dict[int, tuple[list[tuple[float, float]], list[int]]] = {}
        for j, item in enumerate(r.items(obj.get("points", []), f"{where}.points")):
            at = f"{where}.points[{j}]"
            pt = r.mapping(item, at, _POINT, _POINT - {"positive"})
            frame = r.integer(pt["frame"], f"{at}.frame", 0)
            x, y = r.number(pt["x"], f"{at}.x"), r.number(pt["y"], f"{at}.y")
            positive = pt.get("positive", True)
            if not isinstance(positive, bool) and positive not in (0, 1):
                raise r.fail(f"{at}.positive", f"expected true or false, got {positive!r}")
            if n_frames is not None and (why := outside(frame, x, y, n_frames, hw)) is not None:
                raise r.fail(at, why)
            xy, labels = clicks.setdefault(frame, ([], []))
            xy.append((x, y))
            labels.append(int(positive))
        for frame, (xy, labels) in clicks.items():
            prompts.append(
                Prompt(frame=frame, obj_id=obj_id, points_xy=np.array(xy), labels=np.array(labels), box=None)
            )
        boxes: dict[int, int] = {}
        for j, item in enumerate(r.items(obj.get("boxes", []), f"{where}.boxes")):
            at = f"{where}.boxes[{j}]"
            bx = r.mapping(item, at, _BOX, _BOX)
            frame = r.integer(bx["frame"], f"{at}.frame", 0)
            box = [r.number(bx[k], f"{at}.{k}") for k in ("x0", "y0", "x1", "y1")]
            if not (box[0] < box[2] and box[1] < box[3]):
                raise r.fail(at, f"a box needs x0 < x1 and y0 < y1, got {box}")
            if frame in boxes:
                raise r.fail(at, f"a second box on frame {frame} (the first is boxes[{boxes[frame]}])")
            if n_frames is not None:
                if (why := frame_outside(frame, n_frames)) is not None:
                    raise r.fail(at, why)
                if (box := clip_box(box, hw)) is None:
                    raise r.fail(at, "the box lies outside the image")
            boxes[frame] = j
            prompts.append(Prompt(frame=frame, obj_id=obj_id, points_xy=None, labels=None, box=np.array(box)))
    return merge_prompts(prompts)


def read_prompts_json(path: str | PathLike[str], *, axis: int | None = None, shape: Any = None) -> list[Prompt]:
    """Read a JSON prompt file (format in ``docs/prompts.md``).

    Parameters
    ----------
    path : path-like
        The ``.json`` file.
    axis : int, optional
        The video axis the caller uses; an error if the file records another.
    shape : tuple of int, optional
        The stack's shape; prompts outside it are errors.

    Returns
    -------
    list of Prompt
        One prompt per (frame, object), sorted by frame then object id.
    """
    p = Path(path)
    return prompts_from_dict(_load(p), source=str(p), axis=axis, shape=shape)


def read_stack_kind(path: str | PathLike[str]) -> str | None:
    """The ``stack_kind`` a JSON prompt file records (``"t"``, ``"z"``), or None (also for CSV files)."""
    p = Path(path)
    if p.suffix.lower() != ".json":
        return None
    doc = _load(p)
    kind = doc.get("stack_kind") if isinstance(doc, dict) else None
    if kind is not None and kind not in STACK_KINDS:
        raise InputError(f"{p}: stack_kind: expected 't' (a time-lapse) or 'z' (a z-stack), got {kind!r}")
    return kind


def _load(p: Path) -> Any:
    """The decoded JSON document of ``p``; every way it can fail is one line naming the file."""
    try:
        doc = json.loads(p.read_text(encoding="utf-8-sig"), object_pairs_hook=_unique_keys)
    except FileNotFoundError:
        raise InputError(f"prompt file not found: {p}") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{p}, line {e.lineno} column {e.colno}: not valid JSON ({e.msg})") from None
    except _DuplicateKey as e:  # json keeps the last value silently: a hand edit gone wrong
        raise InputError(f"{p}: field {e.key!r} appears twice in one object") from None
    except RecursionError:
        raise InputError(f"{p}: not valid JSON (nested too deeply)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: cannot read the file ({e})") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        text = str(e).strip().splitlines()
        raise InputError(f"{p}: not valid JSON ({text[0][:160] if text else type(e).__name__})") from None
    return doc


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` that refuses a key given twice in one JSON object."""
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise _DuplicateKey(key)
        doc[key] = value
    return doc


def write_prompts_json(
    path: str | PathLike[str], prompts: Iterable[Prompt], *, axis: int = 0, stack_kind: str | None = None
) -> None:
    """Write ``prompts`` as a JSON prompt file (atomically: a temporary file renamed into place).

    ``stack_kind`` (``"t"`` or ``"z"``) is recorded if given, so ``segment`` and ``batch``
    track the stack as the kind it was prompted as.
    """
    p = Path(path)
    text = json.dumps(prompts_to_dict(prompts, axis=axis, stack_kind=stack_kind), indent=2) + "\n"
    write_text_atomically(p, text)
