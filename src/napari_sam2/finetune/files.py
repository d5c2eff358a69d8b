"""Fine-tuning from files, as ``napari-sam2 finetune`` does it.

Image and label files are opened lazily (:func:`open_labelled`); the run directory is
``OUT.run`` next to the output model (:func:`run_dir_for`) and holds, besides the training
loop's ``last.pt``, ``log.jsonl`` and ``settings.json``, a ``finetune.json`` of the inputs
and options: running the same command again resumes, another command is refused. The
model is written only when every step is done, atomically.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, OutputExistsError, one_line
from ..model.sam2 import SAM2
from .arrays import FINETUNE_SETTINGS, LabelledStack, finetune
from .loop import TrainSettings, export_model

__all__ = ["FinetuneResult", "finetune_files", "open_labelled", "run_dir_for"]



def open_labelled(image_path: Path, labels_path: Path, axis: int, size: int) -> tuple[LabelledStack, list[Any]]:
    """A :class:`LabelledStack` of two files (read lazily), and the opened files to close.

    ``labels_path`` is an OME-Zarr label store (as the plugin and ``segment`` write it,
    frames along the image's stack axis) or an image file of the image's shape, opened
    with the same ``axis``.
    """
    from ..io.labels import read_labels
    from ..io.stacks import open_stack

    opened = [open_stack(image_path, axis=axis)]
    try:
        labels: Any = None
        if labels_path.is_dir() or labels_path.name.lower().endswith(".zarr"):
            try:
                labels = read_labels(labels_path).data
            except InputError:
                pass  # a zarr image, not a label store: read it as a stack below
        if labels is None:
            opened.append(open_stack(labels_path, axis=axis))
            labels = opened[-1].frames  # (T, Y, X), lazy
            if labels.ndim == 4:
                raise InputError(
                    f"labels {str(labels_path)!r} have {labels.shape[-1]} channels; labels must be one "
                    "(T|Z, Y, X) or (Y, X) image of integer object ids"
                )
        elif labels.ndim == 2:  # the labels of a 2-D image: one frame
            labels = labels[None]
        name = f"labels {str(labels_path)!r} of {str(image_path)!r}"
        return LabelledStack(opened[0].frames, labels, size, name=name), opened
    except BaseException:
        for stack in opened:
            stack.close()
        raise


@dataclass(frozen=True)
class FinetuneResult:
    """What :func:`finetune_files` did.

    Attributes:
        output: the written model, or None when it stopped early (``minutes``).
        step: steps done so far; steps: steps asked for.
        run_dir: the resumable run (``last.pt``, ``log.jsonl``).
        frames: labelled frames used; stacks: pairs; clips: whether video steps ran.
        iou_start, iou_end: mean first-click IoU (image steps) of the first and last logs.
        seconds: wall time of this call.
    """

    output: Path | None
    step: int
    steps: int
    run_dir: Path
    frames: int
    stacks: int
    clips: bool
    iou_start: float | None
    iou_end: float | None
    seconds: float


def run_dir_for(output: str | os.PathLike[str]) -> Path:
    """The run directory of an output model: ``OUT.pt.run`` next to it."""
    return Path(str(output) + ".run")


def finetune_files(
    images: Sequence[str | os.PathLike[str]],
    labels: Sequence[str | os.PathLike[str]],
    source: str,
    output: str | os.PathLike[str],
    settings: TrainSettings = FINETUNE_SETTINGS,
    *,
    freeze_encoder: bool = True,
    axis: int = 0,
    config: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    overwrite: bool = False,
    stop_after_minutes: float | None = None,
    progress: bool = True,
) -> FinetuneResult:
    """``napari-sam2 finetune``: load ``source``, fine-tune it on files, write ``output``.

    The output is written atomically (a half-written file never has its name) and only
    when every step is done; the run directory :func:`run_dir_for` keeps the progress.

    Raises
    ------
    InputError
        Different numbers of images and labels, unreadable or mismatched files, labels
        that are not integers or hold no object, a run directory of another fine-tune.
    OutputExistsError
        ``output`` exists and ``overwrite`` is False.
    """
    from ..weights import load_model

    start = time.perf_counter()
    output = Path(output)
    if len(images) != len(labels):
        raise InputError(
            f"got {len(images)} image(s) and {len(labels)} label file(s); give one labels file per image, in order"
        )
    _check_output(output, overwrite, [source, config, *images, *labels])
    run = run_dir_for(output)
    record = {
        "from": source, "config": None if config is None else str(Path(config).absolute()),
        "images": [str(Path(p).absolute()) for p in images], "labels": [str(Path(p).absolute()) for p in labels],
        "axis": axis, "freeze_encoder": freeze_encoder, "settings": dataclasses.asdict(settings),
    }  # fmt: skip
    record = json.loads(json.dumps(record))  # tuples as lists, as read back
    _check_run(run, record)
    model = load_model(source, device, config=config)
    size = model.config.image_size
    opened = []
    try:
        for img, lab in zip(images, labels):
            opened.append(open_labelled(Path(img), Path(lab), axis, size))
        stacks = [s for s, _ in opened]
        run.mkdir(parents=True, exist_ok=True)
        (run / "finetune.json").write_text(json.dumps(record, indent=2) + "\n")
        finetune(
            model, stacks, run, settings, freeze_encoder=freeze_encoder, progress=progress,
            stop_after_minutes=stop_after_minutes,
        )  # fmt: skip
    finally:
        for _, files in opened:
            for f in files:
                f.close()
    step = int(torch.load(run / "last.pt", map_location="cpu", weights_only=True, mmap=True)["step"])
    written = None
    if step >= settings.steps:
        written = _export(model, output, dtype, source=source, steps=step, run=run)
    ious = [r["image/iou_first"] for r in _log(run) if "image/iou_first" in r]
    return FinetuneResult(
        output=written, step=step, steps=settings.steps, run_dir=run,
        frames=sum(int(s.promptable.sum()) for s in stacks), stacks=len(stacks),
        clips=any(s.clip_starts(settings.clip_length) for s in stacks),
        iou_start=ious[0] if ious else None, iou_end=ious[-1] if ious else None,
        seconds=time.perf_counter() - start,
    )  # fmt: skip


def _is_finetuned_model(path: Path) -> bool:
    """A model file that ``finetune`` wrote (:func:`_export`: weights, config, and where they came from)."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - unreadable, or not a checkpoint: not ours
        return False
    return isinstance(payload, dict) and {"model", "config", "source", "steps", "run"} <= payload.keys()


def _check_output(output: Path, overwrite: bool, inputs: Sequence[Any]) -> None:
    """Never an input of the run; --overwrite replaces only a model that finetune wrote."""
    from ..io.labels import check_output_spares, check_replaceable
    from ..weights import bundled_path

    files = [bundled_path(str(f)) or f for f in inputs if f is not None]
    check_output_spares(output, [f for f in files if os.path.exists(f)])
    if output.is_dir():
        raise OutputExistsError(f"{output} is a directory; give a file name such as model.pt")
    check_replaceable(output, overwrite, ours=_is_finetuned_model, what="a model that finetune wrote")


def _check_run(run: Path, record: dict[str, Any]) -> None:
    """Refuse to resume a run directory that belongs to another fine-tune."""
    old = run / "finetune.json"
    if not (run / "last.pt").exists() or not old.exists():
        return
    try:
        before = json.loads(old.read_text())
        if not isinstance(before, dict):
            raise ValueError(f"a JSON {type(before).__name__}, not an object")
    except (ValueError, RecursionError, OSError) as e:  # not "another fine-tune": a damaged record
        raise InputError(
            f"{old} is damaged ({one_line(e)}), so the run in {run} cannot be resumed safely; delete (or move away) "
            "that folder to start over"
        ) from None
    differ = sorted(k for k in record.keys() | before.keys() if record.get(k) != before.get(k))
    if differ:
        raise InputError(
            f"{run} holds a fine-tune with other {', '.join(differ)}; delete it to start over, "
            "or write to another output"
        )


def _log(run: Path) -> list[dict[str, Any]]:
    path = run / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _export(model: SAM2, output: Path, dtype: torch.dtype, **meta: Any) -> Path:
    """:func:`export_model` to ``output`` atomically; nothing is left behind on Ctrl-C."""
    partial = output.with_name(output.name + ".partial")
    try:
        export_model(model, partial, dtype=dtype, **meta)
        os.replace(partial, output)
    finally:
        for leftover in (partial, partial.with_name(partial.name + ".tmp")):
            leftover.unlink(missing_ok=True)
    return output
