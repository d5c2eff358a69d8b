"""VideoSession: one click on one slice, carried through a z-stack or time-lapse.

The session follows the official ``SAM2VideoPredictor`` step for step (same frames
conditioned, same memories and object pointers, same frame order), so its masks equal
the official ones; it differs in how it holds state: frames are read lazily from the
user's array, each frame is encoded once (features cached, spilling to disk past a
RAM budget), per-frame outputs also spill past a budget, and the state is explicit
dataclasses (``engine.memory``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..model.sam2 import SAM2, ImageFeatures, TrackOutput
from ..prompt import Prompt
from ..runtime import PRECISIONS, choose_precision
from .features import FeatureCache
from .frames import FrameSource
from .holes import fill_holes
from .memory import FrameOutput, ObjectTrack, OutputStore, PointPrompt
from .precision import autocast
from .prompts import loose_prompt, model_inputs
from .results import FrameResult
from .runs import Run, correction_runs
from .tracking import condition_on_memory

#: mask-input logits are clamped to this range when a click refines an existing mask
_PREV_LOGIT_CLAMP = 32.0
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class VideoSession:
    """Track objects through a stack with SAM 2's streaming memory.

    Parameters
    ----------
    model : SAM2
        A loaded SAM 2 (``load_model``).
    frames : array-like or FrameSource
        (T, H, W) or (T, H, W, C) numpy / zarr / dask / memory-mapped array, read lazily,
        one frame at a time.
    fill_hole_area : int, default 8
        Fill background holes of up to this many low-resolution pixels inside masks (the
        official CUDA post-processing, here on any device); 0 turns it off.
    compute_dtype : {"float32", "bfloat16", "auto"}, default "float32"
        "float32" gives the official numbers; "bfloat16" is faster where the device
        computes it in hardware (a CPU with AMX-BF16 or AVX512-BF16, a recent GPU) and
        slower where it is emulated; "auto" picks by the hardware
        (:func:`napari_sam2.runtime.choose_precision`). ``session.precision`` says what
        was chosen and why.
    corrections_as_conditioning : bool, default False
        Make every corrected frame a conditioning frame, so corrections survive
        re-propagation (official ``add_all_frames_to_correct_as_cond``).
    window : np.ndarray, optional
        Fixed intensity window for non-uint8 data (else stack percentiles).
    feature_ram_budget, output_ram_budget : int or None
        Bytes of RAM for cached frame features and for per-frame outputs; beyond them,
        data spills to ``spill_dir``.
    stack_kind : {"t", "z", None}
        Time-lapse, z-stack or unknown: picks the model's calibrated ``presence_bias``
        (``SAM2Config.presence_bias_t`` / ``_z``; 0 for the official models and for None).
    presence_bias : float, optional
        Added to the object-present logit on every tracked frame (not on clicked frames
        without memory), overriding the calibrated value: > 0 keeps an object the tracker
        doubts, < 0 lets it go sooner. 0 is the official rule.
    """

    def __init__(
        self,
        model: SAM2,
        frames: Any,
        *,
        fill_hole_area: int = 8,
        compute_dtype: str = "float32",
        corrections_as_conditioning: bool = False,
        window: np.ndarray | None = None,
        feature_ram_budget: int | None = 1 << 30,
        output_ram_budget: int | None = 512 << 20,
        spill_dir: str | None = None,
        stack_kind: str | None = None,
        presence_bias: float | None = None,
    ) -> None:
        if stack_kind not in (None, "t", "z"):
            raise InputError(f"stack_kind is 't' (time-lapse), 'z' (z-stack) or None, got {stack_kind!r}")
        if compute_dtype not in PRECISIONS:
            raise InputError(f"compute_dtype must be one of {', '.join(PRECISIONS)}, got {compute_dtype!r}")
        if fill_hole_area < 0:
            raise InputError("fill_hole_area must be >= 0")
        self.model = model
        self.source = frames if isinstance(frames, FrameSource) else FrameSource(frames, window=window)
        self.fill_hole_area = int(fill_hole_area)
        self.stack_kind = stack_kind
        self.presence_bias = float(model.config.presence_bias(stack_kind) if presence_bias is None else presence_bias)
        self.precision = choose_precision(compute_dtype, model.device)
        self.compute_dtype = _DTYPES[self.precision.dtype]
        self.corrections_as_conditioning = corrections_as_conditioning
        self.features = FeatureCache(
            model, self.source, ram_budget_bytes=feature_ram_budget, spill_dir=spill_dir, compute_dtype=self.compute_dtype
        )
        self.outputs = OutputStore(output_ram_budget, spill_dir)
        self._tracks: dict[int, ObjectTrack] = {}
        self._corrections: set[int] = set()
        # bumped by every change of prompts or objects: a suspended propagate() that sees it
        # change stops (it would track with memories its first frames did not have)
        self._edits = 0

    # ------------------------------------------------------------------ properties
    @property
    def num_frames(self) -> int:
        return len(self.source)

    @property
    def hw(self) -> tuple[int, int]:
        return self.source.hw

    @property
    def obj_ids(self) -> list[int]:
        return list(self._tracks)

    def close(self) -> None:
        """Release spill files."""
        self.outputs.close()
        self.features.close()

    def __enter__(self) -> "VideoSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ prompts
    def add_prompt(
        self,
        frame: int | None = None,
        obj_id: int | None = None,
        points: Any = None,
        labels: Any = None,
        box: Any = None,
        mask: Any = None,
        *,
        prompt: Prompt | None = None,
        refine: bool = True,
    ) -> FrameResult:
        """Replace an object's prompts on one frame and return that frame's result.

        Parameters
        ----------
        prompt : Prompt
            The clicks, box or mask of ``prompt.obj_id`` on ``prompt.frame``, in image pixels
            ``(x, y)``; a new object id starts a new object.
        refine : bool, default True
            SAM 2's rule: clicks on a frame that already has this object's mask refine that
            mask (it is the decoder's mask input). False decodes the prompt afresh, as on a
            new object: the mask is then a function of this prompt alone (replayable).
        frame, obj_id, points, labels, box, mask
            Instead of ``prompt``, its parts as loose arrays (as the official predictor takes
            them): ``points`` (N, 2) ``(x, y)`` with ``labels`` (N,) 1 object / 0 background,
            ``box`` ``x0, y0, x1, y1`` (may be combined with points), or ``mask`` (H, W) bool.

        Returns
        -------
        FrameResult
            Every object's masks on that frame (full resolution made only when read).
        """
        if prompt is None:
            self._check_frame(frame)
            obj_id = self._check_obj_id(obj_id)
            prompt = loose_prompt(frame, obj_id, points, labels, box, mask, self.hw)  # type: ignore[arg-type]
        elif frame is not None or obj_id is not None or any(a is not None for a in (points, labels, box, mask)):
            raise InputError("give a Prompt or its loose parts (frame, obj_id, points, ...), not both")
        else:
            self._check_frame(prompt.frame)
            prompt.check(self.hw)
        with torch.inference_mode():
            return self._add(prompt, refine)

    def _add(self, prompt: Prompt, refine: bool) -> FrameResult:
        frame, obj_id = prompt.frame, prompt.obj_id
        point_prompt, mask_prompt = model_inputs(prompt, self.hw, self.model.config.image_size, self.model.device)

        track = self._tracks.get(obj_id) or ObjectTrack(obj_id)
        is_init = frame not in track.tracked
        reverse = False if is_init else track.tracked[frame]
        is_cond = is_init or self.corrections_as_conditioning
        temp = track.temp_cond if is_cond else track.temp_non_cond
        prev_logits = None
        if point_prompt is not None and refine:
            prev = temp.get(frame) or track.cond.get(frame) or track.non_cond.get(frame)
            if prev is not None:
                prev_logits = self.outputs.logits(prev).clamp(-_PREV_LOGIT_CLAMP, _PREV_LOGIT_CLAMP)
        out = self._track_frame(
            track, frame, is_init=is_init, points=point_prompt, mask=mask_prompt,
            reverse=reverse, run_memory_encoder=False, prev_logits=prev_logits,
        )  # fmt: skip
        # commit only after the model ran: a failure leaves the session as it was
        self._edits += 1
        self._tracks.setdefault(obj_id, track)
        if mask_prompt is not None:
            track.masks[frame] = mask_prompt
            track.points.pop(frame, None)
        else:
            track.points[frame] = point_prompt  # type: ignore[assignment]
            track.masks.pop(frame, None)
        self._replace(temp, frame, out)
        if not is_init:
            self._corrections.add(frame)
        return self._result(frame, prefer_temp_cond=is_cond)

    def clear_prompts(self, frame: int, obj_id: int) -> FrameResult:
        """Remove ``obj_id``'s prompts on ``frame`` (its output there becomes a tracked one)."""
        self._check_frame(frame)
        track = self._track_of(obj_id)
        self._edits += 1
        track.points.pop(frame, None)
        track.masks.pop(frame, None)
        for d in (track.temp_cond, track.temp_non_cond):
            if frame in d:
                self.outputs.drop(d.pop(frame))
        out = track.cond.pop(frame, None)
        if out is not None:
            self._replace(track.non_cond, frame, out)
            track.tracked.pop(frame, None)
        self._prune_corrections()
        is_cond = any(frame in t.temp_cond for t in self._tracks.values())
        return self._result(frame, prefer_temp_cond=is_cond)

    def remove_object(self, obj_id: int) -> None:
        """Forget an object and everything tracked for it."""
        track = self._track_of(obj_id)
        self._edits += 1
        for d in (track.cond, track.non_cond, track.temp_cond, track.temp_non_cond):
            for out in d.values():
                self.outputs.drop(out)
        del self._tracks[track.obj_id]
        self._prune_corrections()

    def _prune_corrections(self) -> None:
        """Forget pending corrections on frames that no object has a prompt on any more."""
        prompted = set().union(*(t.prompted_frames() for t in self._tracks.values()))
        self._corrections &= prompted

    def reset(self) -> None:
        """Remove all objects, prompts and results (cached frame features are kept)."""
        for obj_id in list(self._tracks):
            self.remove_object(obj_id)

    # ------------------------------------------------------------------ propagation
    def propagate(
        self, start: int | None = None, reverse: bool = False, max_frames: int | None = None
    ) -> Iterator[FrameResult]:
        """Track all objects from ``start`` (default: the first prompted frame).

        Yields one :class:`FrameResult` per frame in the official order (the start
        frame included). Closing the generator early keeps every finished frame.

        A run tracks with the prompts it started with. Changing prompts or objects
        (``add_prompt``, ``clear_prompts``, ``remove_object``, ``reset``) while it is
        suspended between two frames is allowed, but ends that run: its next step raises
        :class:`~napari_sam2.errors.InputError` (the frames it yielded are kept, a new
        object or a correction is not marked as propagated); start a new ``propagate``.
        """
        with torch.inference_mode():
            self._preflight()
        edits = self._edits
        n = self.num_frames
        if start is None:
            start = min(t for track in self._tracks.values() for t in track.cond)
        self._check_frame(start)
        if max_frames is None:
            max_frames = n
        if max_frames < 0:
            raise InputError("max_frames must be >= 0")
        if reverse:
            end = max(start - max_frames, 0)
            order = range(start, end - 1, -1) if start > 0 else range(0)
        else:
            end = min(start + max_frames, n - 1)
            order = range(start, end + 1)
        for frame in order:
            if self._edits != edits:
                raise InputError(
                    f"the prompts changed while this propagation was suspended (before frame {frame}), "
                    "so it stopped; the frames it yielded are kept; start a new propagate() to track "
                    "with the new prompts, or finish or close a propagation before changing prompts"
                )
            with torch.inference_mode():
                new = self._track_objects([t for t in self._tracks.values() if frame not in t.cond], frame, reverse)
                for track in self._tracks.values():  # commit the whole frame at once
                    if track.obj_id in new:
                        self._replace(track.non_cond, frame, new[track.obj_id])
                    track.tracked[frame] = reverse
                self._corrections.discard(frame)
                result = self._result(frame, prefer_temp_cond=None)
            yield result

    @property
    def pending_corrections(self) -> list[int]:
        """Frames with a correction (a prompt on an already tracked frame) that no
        propagation has started from or passed through since."""
        return sorted(self._corrections)

    def correction_runs(self, direction: str = "both") -> list[Run]:
        """The runs that carry the pending corrections outward (``runs.correction_runs``)."""
        prompted = {t.obj_id: t.prompted_frames() for t in self._tracks.values()}
        return correction_runs(prompted, self._corrections, self.num_frames, direction)

    def result(self, frame: int) -> FrameResult:
        """The current masks of every object on ``frame`` (prompted, tracked or empty)."""
        self._check_frame(frame)
        return self._result(frame, prefer_temp_cond=None)

    def label_image(self, frame: int) -> np.ndarray:
        """(H, W) uint32 label image of ``frame`` (overlap rule: highest logit wins)."""
        return self.result(frame).label_image()

    # ------------------------------------------------------------------ internals
    def _preflight(self) -> None:
        """Give every pending click result a memory and make it part of the track."""
        if not self._tracks:
            raise InputError("no prompts yet: add a prompt before propagating")
        s = self.model.config.image_size
        for track in self._tracks.values():
            for temp, dest in ((track.temp_non_cond, track.non_cond), (track.temp_cond, track.cond)):
                for frame, out in temp.items():
                    if not out.has_memory:
                        high = F.interpolate(self.outputs.logits(out), size=(s, s), mode="bilinear", align_corners=False)
                        feats = self.features.get(frame)
                        with autocast(self.model.device, self.compute_dtype):
                            memory, _ = self.model.encode_memory(
                                feats.embed, high, out.object_score, is_mask_from_pts=True
                            )
                        self.outputs.set_memory(out, memory)
                    self._replace(dest, frame, out)
                temp.clear()
            if not track.cond:
                raise InputError(f"object {track.obj_id} has no prompt on any frame")
            for frame in track.cond:
                if frame in track.non_cond:
                    self.outputs.drop(track.non_cond.pop(frame))

    def _track_frame(
        self,
        track: ObjectTrack,
        frame: int,
        *,
        is_init: bool,
        points: PointPrompt | None,
        mask: torch.Tensor | None,
        reverse: bool,
        run_memory_encoder: bool,
        prev_logits: torch.Tensor | None,
    ) -> FrameOutput:
        """One object on one frame: decode (with memory unless initial) and optionally encode memory."""
        model = self.model
        feats: ImageFeatures = self.features.get(frame)
        with autocast(model.device, self.compute_dtype):
            out = self._decode(track, feats, frame, is_init, points, mask, reverse, prev_logits)
            logits = out.logits.float()
            if self.fill_hole_area > 0:
                logits = fill_holes(logits, self.fill_hole_area)
            record = self.outputs.new(logits, out.obj_ptr.float(), out.object_score.float())
            if run_memory_encoder:
                memory, _ = model.encode_memory(feats.embed, out.high_res_logits, out.object_score, points is not None)
                self.outputs.set_memory(record, memory)
        return record

    def _track_objects(self, tracks: list[ObjectTrack], frame: int, reverse: bool) -> dict[int, FrameOutput]:
        """Track several objects on one frame (no prompts there), with their memories.

        The same steps as :meth:`_track_frame` for each object, but memory attention's
        frame-only part is computed once for the frame (``tracking.condition_on_memory``).
        The numbers are the same up to float rounding (1e-6 in the logits).
        """
        if not tracks:
            return {}
        model = self.model
        feats: ImageFeatures = self.features.get(frame)
        multimask = model.use_multimask(False, 0)
        new: dict[int, FrameOutput] = {}
        with autocast(model.device, self.compute_dtype):
            conditioned = condition_on_memory(
                model, self.outputs, tracks, frame, feats, num_frames=self.num_frames, reverse=reverse
            )
            for track, pix in zip(tracks, conditioned):
                out = model.track_heads(pix, feats.high_res, None, None, None, multimask, self.presence_bias)
                logits = out.logits.float()
                if self.fill_hole_area > 0:
                    logits = fill_holes(logits, self.fill_hole_area)
                record = self.outputs.new(logits, out.obj_ptr.float(), out.object_score.float())
                memory, _ = model.encode_memory(feats.embed, out.high_res_logits, out.object_score, False)
                self.outputs.set_memory(record, memory)
                new[track.obj_id] = record
        return new

    def _decode(
        self,
        track: ObjectTrack,
        feats: ImageFeatures,
        frame: int,
        is_init: bool,
        points: PointPrompt | None,
        mask: torch.Tensor | None,
        reverse: bool,
        prev_logits: torch.Tensor | None,
    ) -> TrackOutput:
        """The SAM heads on one frame: the mask itself, or a decode of the (memory-conditioned) features."""
        model = self.model
        if mask is not None and model.config.use_mask_input_as_output_without_sam:
            out = model.mask_as_output(feats.embed, feats.high_res, mask)
        else:
            if is_init:
                pix = model.no_memory_features(feats)
            else:
                (pix,) = condition_on_memory(
                    model, self.outputs, [track], frame, feats, num_frames=self.num_frames, reverse=reverse
                )
            n_points = 0 if points is None else points.labels.shape[1]
            out = model.track_heads(
                pix,
                feats.high_res,
                None if points is None else points.coords,
                None if points is None else points.labels,
                prev_logits if mask is None else mask,
                model.use_multimask(is_init, n_points),
                presence_bias=0.0 if is_init else self.presence_bias,
            )
        return out

    def _result(self, frame: int, *, prefer_temp_cond: bool | None) -> FrameResult:
        """Each object's low-resolution output on ``frame``; full resolution is made when read."""
        low = []
        for track in self._tracks.values():
            out = track.output(frame, prefer_temp_cond=prefer_temp_cond)
            low.append(None if out is None else self.outputs.logits(out))
        return FrameResult(frame, list(self._tracks), low_res=low, hw=self.hw)

    def _replace(self, d: dict[int, FrameOutput], frame: int, out: FrameOutput) -> None:
        old = d.get(frame)
        d[frame] = out
        if old is not None and old is not out:
            self.outputs.drop(old)

    def _check_frame(self, frame: int) -> None:
        if not isinstance(frame, (int, np.integer)) or isinstance(frame, bool):
            raise InputError(f"frame must be an integer, got {frame!r}")
        if not 0 <= frame < self.num_frames:
            raise InputError(f"frame {frame} is out of range: the stack has frames 0..{self.num_frames - 1}")

    @staticmethod
    def _check_obj_id(obj_id: Any) -> int:
        if not isinstance(obj_id, (int, np.integer)) or isinstance(obj_id, bool) or obj_id < 1:
            raise InputError(f"object ids are integers >= 1 (0 is background in a label image), got {obj_id!r}")
        return int(obj_id)

    def _track_of(self, obj_id: Any) -> ObjectTrack:
        track = self._tracks.get(obj_id) if isinstance(obj_id, (int, np.integer)) else None
        if track is None:
            raise InputError(f"unknown object id {obj_id!r}; known ids: {self.obj_ids}")
        return track
