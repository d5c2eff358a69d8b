"""The training loop: schedule, resumable checkpoints, a log file and a progress bar.

A run is described by a :class:`TrainSettings` and writes into one directory::

    OUT/settings.json   what was asked for (the reproducible command)
    OUT/last.pt         model + optimiser + step, rewritten atomically every few minutes
    OUT/log.jsonl       one line of losses per logged step
    OUT/model.pt        the final weights (``{"model": fp16 state dict, "config": ...}``)

Running the same command again resumes from ``last.pt``. Every step's data come from a
seed derived from ``(seed, step)``, so a resumed run sees the same data as an unbroken one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..model.sam2 import SAM2
from ..runtime import configure_torch
from .steps import image_step, video_step

__all__ = ["TrainSettings", "export_model", "train"]


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of a run (defaults: the shipped model's)."""

    steps: int = 5000
    lr: float = 3e-4
    warmup: int = 200
    weight_decay: float = 0.05
    clip_grad: float = 1.0
    seed: int = 0
    images_per_step: int = 4
    objects_per_image: int = 8
    corrections: int = 2
    clip_length: int = 8
    objects_per_clip: int = 3
    video_fraction: float = 0.4  # share of steps that train on clips (after video_start)
    video_start: float = 0.15  # fraction of the run trained on images only
    # later phases (the defaults are what the shipped run did, whose settings.json lacks them):
    end_fraction: float = 0.0  # share of synthetic clips in which an object ends (factory's synthetic_clip)
    gap_fraction: float = 0.0  # share in which it is gone in between and comes back (factory's synthetic_clip)
    division_fraction: float = 0.0  # share in which it divides and stays the mother (factory's synthetic_clip)
    timelapse_fraction: float = 0.6  # share of the other clips cut from time-lapses, not z-stacks
    timelapse_frames: int | None = None  # those time-lapses have at least this many frames (factory's synthetic_clip)
    fast_fraction: float = 0.0  # share of the time-lapses drawn with fast cells (factory's synthetic_clip)
    correction_fraction: float = 0.4  # share of clips with a correction click (steps.video_step)
    correction_at: str = "random"  # where it goes: "random" or "worst" (steps.video_step)
    freeze: tuple[str, ...] = ()  # (dotted) module names not trained (e.g. "image_encoder")
    checkpoint_minutes: float = 5.0
    log_every: int = 10

    def lr_at(self, step: int) -> float:
        """Linear warmup, then cosine decay to 5% of ``lr``."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        frac = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))

    def is_video(self, step: int, rng: np.random.Generator) -> bool:
        return step >= self.video_start * self.steps and rng.uniform() < self.video_fraction


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _resume(last: Path, model: SAM2, opt: torch.optim.Optimizer) -> int:
    """Load ``last`` (this run's model, optimiser and step) into ``model`` and ``opt``; the step.

    A file that is unreadable, unsafe, or not this run's training state is a one-line
    :class:`~napari_sam2.errors.CheckpointError` naming it. It is left as it is (it may be
    the only copy of hours of training): the message says how to start over instead.
    """
    from ..errors import CheckpointError, one_line
    from ..weights import check_state_dict
    from ..weights.reading import _torch_load

    start_over = f"to start over from step 0, delete (or move away) the run folder {str(last.parent)!r}"

    def refuse(problem: str) -> CheckpointError:
        return CheckpointError(f"cannot resume the training run: {problem}; {start_over}")

    try:
        state = _torch_load(last)
    except CheckpointError as exc:
        raise refuse(str(exc)) from None
    step = state.get("step") if isinstance(state, dict) else None
    if not (isinstance(state, dict) and isinstance(state.get("model"), dict)
            and isinstance(state.get("optimizer"), dict) and isinstance(step, int) and step >= 0):  # fmt: skip
        what = "an exported model" if isinstance(state, dict) and "config" in state else f"a {type(state).__name__}"
        raise refuse(
            f"checkpoint {str(last)!r} is not a training checkpoint (a dict of model, optimizer and step), "
            f"it holds {what}"
        )
    try:
        check_state_dict(model, state["model"], source=last)
    except CheckpointError as exc:
        raise refuse(f"{exc} (it was saved for another model)") from None
    try:  # before the model: a failure leaves the model as it was
        opt.load_state_dict(state["optimizer"])
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
        raise refuse(
            f"checkpoint {str(last)!r} holds optimiser state for other trained parameters ({one_line(exc)})"
        ) from None
    model.load_state_dict(state["model"])
    return step


def export_model(model: SAM2, path: str | os.PathLike[str], *, dtype: torch.dtype = torch.float16, **meta: Any) -> Path:
    """Write ``{"model": state dict in dtype, "config": JSON, ...meta}``, loadable by ``load_model``."""
    path = Path(path)
    state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    payload = {"model": state, "config": model.config.to_json(), **{k: str(v) for k, v in meta.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_save(payload, path)
    return path


def train(
    model: SAM2,
    out_dir: str | os.PathLike[str],
    settings: TrainSettings,
    *,
    image_batches: Callable[[int], Any],
    clips: Callable[[int], Any] | None,
    progress: bool = True,
    on_log: Callable[[dict[str, float]], None] | None = None,
    stop_after_minutes: float | None = None,
) -> SAM2:
    """Train ``model`` in place (resuming from ``out_dir/last.pt`` if there is one).

    Arguments:
        image_batches: step seed -> :class:`~napari_sam2.finetune.data.ImageBatch`.
        clips: step seed -> :class:`~napari_sam2.finetune.data.Clip`, or None (image stage only).
        stop_after_minutes: save and return after this much wall time (resume later).
    """
    configure_torch()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "settings.json").write_text(json.dumps(dataclasses.asdict(settings), indent=2))
    (out / "config.json").write_text(model.config.to_json())
    for name in settings.freeze:
        model.get_submodule(name).requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.lr,
    )
    step = 0
    last = out / "last.pt"
    if last.exists():
        step = _resume(last, model, opt)
    model.train()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=settings.steps, initial=step, unit="step", dynamic_ncols=True)
    started = time.monotonic()
    last_save = started
    running: dict[str, list[float]] = {}
    with open(out / "log.jsonl", "a") as log_file:
        while step < settings.steps:
            rng = np.random.default_rng([settings.seed, step])
            seed = int(rng.integers(2**31))
            video = clips is not None and settings.is_video(step, rng)
            t0 = time.monotonic()
            if video:
                clip = clips(seed)
                loss, parts = video_step(
                    model, clip, rng, p_correction=settings.correction_fraction,
                    correction_at=settings.correction_at, features=clip.features,
                )  # fmt: skip
            else:
                batch = image_batches(seed)
                loss, parts = image_step(model, batch, rng, corrections=settings.corrections, features=batch.features)
            for g in opt.param_groups:
                g["lr"] = settings.lr_at(step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, settings.clip_grad)
            opt.step()
            step += 1
            kind = "video" if video else "image"
            parts = {f"{kind}/{k}": v for k, v in parts.items()}
            parts[f"{kind}/loss"] = float(loss.detach())
            parts[f"{kind}/seconds"] = time.monotonic() - t0
            parts["grad_norm"] = float(grad_norm)
            for k, v in parts.items():
                running.setdefault(k, []).append(v)
            if step % settings.log_every == 0 or step == settings.steps:
                record = {"step": step, "lr": settings.lr_at(step - 1), "time": round(time.monotonic() - started, 1)}
                record.update({k: round(float(np.mean(v)), 5) for k, v in sorted(running.items())})
                running.clear()
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                if on_log is not None:
                    on_log(record)
                if bar is not None:
                    bar.set_postfix(
                        {k.split("/")[-1]: record[k] for k in ("image/iou_first", "video/iou_track") if k in record}
                    )
            if bar is not None:
                bar.update(1)
            now = time.monotonic()
            timeout = stop_after_minutes is not None and now - started > 60 * stop_after_minutes
            if now - last_save > 60 * settings.checkpoint_minutes or step == settings.steps or timeout:
                _atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}, last)
                last_save = now
            if timeout:
                break
    if bar is not None:
        bar.close()
    model.eval()
    return model
