"""Fine-tune a SAM 2 model on your own labelled stacks (``napari-sam2 finetune``).

What is trained
    Both stages of the training (:mod:`napari_sam2.finetune.steps`), on the labelled
    data instead of synthetic data. Image steps: frames drawn at random among the frames
    that have an object, up to ``objects_per_image`` objects each, a click, clicks or a
    box and then correction clicks. Video steps: clips of ``clip_length`` consecutive
    frames, forwards or backwards, the objects of the first frame prompted there and
    tracked with the memory. A frame whose labels are all 0 counts as *not annotated*,
    never as "every object has left", so clips never cross one; stacks (or runs of
    annotated frames) shorter than a clip only feed image steps.

Frozen encoder (the default)
    The image encoder, and the mask decoder's two projections of its high-resolution
    maps (they act on the encoder's output before any prompt), are not trained. A frame
    is encoded once, under ``torch.no_grad``, and its features are kept, so a step costs
    only the prompt encoder, the mask decoder and the memory: the CPU-friendly path.
    Augmentation: the 8 flips / 90-degree turns of a frame, each encoded the first time
    it is drawn and then kept (a least-recently-used cache of at most ``cache_mb``). No
    gamma or contrast changes: they would need the encoder at every step.

Trained encoder (``freeze_encoder=False``)
    Every step encodes its frames: flips, turns, gamma and contrast changes, as when
    training from scratch.

Every frame is preprocessed as the plugin and ``segment`` do: the stack-wide intensity
window of :class:`~napari_sam2.engine.frames.FrameSource`, resized to the model's input.
The run directory holds the loop's ``last.pt``, ``log.jsonl`` and ``settings.json``
(:func:`~napari_sam2.finetune.loop.train`). Fine-tuning from files, as the command line
does it (a run directory next to the output, atomic export): :mod:`napari_sam2.finetune.files`.
"""

from __future__ import annotations

import dataclasses
import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..engine.frames import FrameSource
from ..errors import InputError
from ..model.sam2 import SAM2, ImageFeatures
from .data import MIN_AREA, Clip, ImageBatch, _pick, _resize_labels, _to_model
from .loop import TrainSettings, train

__all__ = ["ENCODER", "EncodedFrames", "FINETUNE_SETTINGS", "LabelledStack", "Sampler", "finetune"]

#: modules a frozen-encoder fine-tune keeps as they are (what ``encode_image`` computes)
ENCODER = ("image_encoder", "sam_mask_decoder.conv_s0", "sam_mask_decoder.conv_s1")

#: fine-tuning defaults: fewer steps and a smaller learning rate than training from scratch,
#: clips from the start (the model already tracks), a checkpoint every 2 minutes, and the
#: shipped model's phase-2 corrections (on the worst-tracked frame, 60% of the clips): with
#: random-frame corrections, fine-tuning lowered tracking on the new look (bench_finetune)
FINETUNE_SETTINGS = TrainSettings(
    steps=300, lr=1e-4, warmup=20, video_start=0.0, checkpoint_minutes=2.0, correction_at="worst", correction_fraction=0.6
)


# --------------------------------------------------------------------------- data


class LabelledStack:
    """A stack (or one 2-D image) and its instance labels, read one frame at a time.

    Arguments:
        image: (T, H, W) or (T, H, W, C) array-like (numpy, memmap, zarr, a
            :class:`~napari_sam2.io.stacks.Stack`'s ``frames``); with 2-D labels, one (H, W)
            or (H, W, C) image.
        labels: (T, H, W) or (H, W) integer labels, 0 = background; ``labels[t]`` reads frame t.
        size: the model's input size (objects smaller than ``MIN_AREA`` pixels there are
            never prompted).
        name: how messages name this pair.

    Raises:
        InputError: labels that are not integers, shapes that differ, no object to prompt.
    """

    def __init__(self, image: Any, labels: Any, size: int, *, name: str = "labels") -> None:
        self.name = name
        self.size = size
        dtype = np.dtype(labels.dtype)
        if dtype.kind not in "biu":
            raise InputError(f"{name}: labels must be integer instance labels (0 = background), got dtype {dtype}")
        if labels.ndim == 2:  # one image: a one-frame stack
            image, labels = np.asarray(image)[None], np.asarray(labels)[None]
        if labels.ndim != 3:
            raise InputError(f"{name}: labels must be 2-D (Y, X) or 3-D (T|Z, Y, X), got shape {tuple(labels.shape)}")
        image_shape, label_shape = tuple(int(n) for n in image.shape), tuple(int(n) for n in labels.shape)
        if image_shape[:3] != label_shape:
            raise InputError(
                f"{name}: the image (frames {image_shape[0]}, {image_shape[1]} x {image_shape[2]}) and its labels "
                f"(frames {label_shape[0]}, {label_shape[1]} x {label_shape[2]}) differ in shape"
            )
        self.frames = FrameSource(image)
        self.labels = labels
        #: (T,) frames with any label (annotated), and with an object big enough to prompt
        self.annotated = np.zeros(label_shape[0], dtype=bool)
        self.promptable = np.zeros(label_shape[0], dtype=bool)
        for t in range(label_shape[0]):
            ids, areas = np.unique(self.small_labels(t), return_counts=True)
            self.annotated[t] = bool((ids > 0).any())
            self.promptable[t] = bool(((ids > 0) & (areas >= MIN_AREA)).any())
        if not self.annotated.any():
            raise InputError(f"{name}: the labels hold no object (every pixel is 0)")
        if not self.promptable.any():
            raise InputError(
                f"{name}: no labelled object covers {MIN_AREA} pixels at the model's {size} x {size} input; "
                "the objects are too small for this model"
            )

    def __len__(self) -> int:
        return len(self.annotated)

    def small_labels(self, t: int) -> np.ndarray:
        """Labels of frame ``t`` at the model's input size (S, S), nearest neighbour."""
        return _resize_labels(np.asarray(self.labels[t]), self.size)

    def clip_starts(self, length: int) -> list[tuple[int, bool]]:
        """(first frame, backwards) of every clip of ``length`` annotated frames whose
        first frame (the last one, backwards) has an object to prompt."""
        if len(self) < length:
            return []
        ok = np.convolve(self.annotated.astype(int), np.ones(length, int), mode="valid") == length
        starts = [(int(s), False) for s in np.nonzero(ok & self.promptable[: len(ok)])[0]]
        return starts + [(int(s), True) for s in np.nonzero(ok & self.promptable[length - 1 :])[0]]

    def model_input(self, frames: Sequence[int], rng: np.random.Generator | None = None) -> torch.Tensor:
        """(N, 3, S, S) normalised model input of ``frames`` with the stack-wide window;
        with ``rng``, one random gamma/contrast change for all of them."""
        images = np.stack([self.frames.frame(int(t)) for t in frames])
        return _to_model(images, self.size, rng, self.frames.window)


def _turn(x: Any, variant: int) -> Any:
    """One of the 8 flips / 90-degree turns of the last two axes (numpy or torch)."""
    k, flip = variant % 4, variant >= 4
    if isinstance(x, torch.Tensor):
        x = torch.rot90(x, k, dims=(-2, -1))
        return x.flip(-1) if flip else x
    x = np.rot90(x, k, axes=(-2, -1))
    return np.ascontiguousarray(x[..., ::-1] if flip else x)


class EncodedFrames:
    """Encoder outputs of (stack, frame, flip/turn) kept once computed; least recently
    used entries are dropped past ``limit_mb``. Features live on the CPU."""

    def __init__(self, model: SAM2, stacks: Sequence[LabelledStack], limit_mb: float) -> None:
        self.model = model
        self.stacks = stacks
        self.limit = int(limit_mb * 2**20)
        self.used = 0
        self.encoded = 0  # frames encoded (cache misses), for the record
        self._entries: OrderedDict[tuple[int, int, int], tuple[torch.Tensor, ...]] = OrderedDict()
        self._pos: torch.Tensor | None = None

    def get(self, stack: int, t: int, variant: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(embed, high_res[0], high_res[1]) of one frame, each with batch size 1."""
        key = (stack, t, variant)
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]  # type: ignore[return-value]
        x = _turn(self.stacks[stack].model_input([t]), variant)
        with torch.no_grad():
            f = self.model.encode_image(x.to(self.model.device))
        entry = (f.embed.cpu(), f.high_res[0].cpu(), f.high_res[1].cpu())
        self._pos = f.pos[:1].cpu()
        self.encoded += 1
        size = sum(e.numel() * e.element_size() for e in entry)
        while self._entries and self.used + size > self.limit:
            self.used -= sum(e.numel() * e.element_size() for e in self._entries.popitem(last=False)[1])
        if size <= self.limit:
            self._entries[key] = entry
            self.used += size
        return entry

    def features(self, keys: Sequence[tuple[int, int, int]]) -> ImageFeatures:
        """The features of several frames as one batch, on the model's device."""
        parts = [self.get(*k) for k in keys]
        device = self.model.device
        embed, hr0, hr1 = (torch.cat([p[i] for p in parts]).to(device) for i in range(3))
        assert self._pos is not None
        pos = self._pos.to(device).expand(len(keys), -1, -1, -1)
        return ImageFeatures(embed=embed, pos=pos, high_res=(hr0, hr1))


class Sampler:
    """Training batches and clips drawn from labelled stacks, seeded per step.

    With a :class:`EncodedFrames` the batches carry their frames' features (and no pixels);
    without one they carry augmented pixels for the training step to encode.
    """

    def __init__(
        self, stacks: Sequence[LabelledStack], settings: TrainSettings, *, cache: EncodedFrames | None, augment: bool
    ) -> None:
        self.stacks = stacks
        self.settings = settings
        self.cache = cache
        self.augment = augment
        self.frames = [(i, int(t)) for i, s in enumerate(stacks) for t in np.nonzero(s.promptable)[0]]
        self.starts = [(i, *start) for i, s in enumerate(stacks) for start in s.clip_starts(settings.clip_length)]

    @property
    def has_clips(self) -> bool:
        return bool(self.starts)

    def _variant(self, rng: np.random.Generator) -> int:
        return int(rng.integers(8)) if self.augment else 0

    def _pixels(self, stack: int, frames: Sequence[int], variant: int, rng: np.random.Generator) -> torch.Tensor:
        """(N, 3, S, S) model input of frames of one stack, augmented alike."""
        x = self.stacks[stack].model_input(frames, rng if self.augment else None)
        return _turn(x, variant)

    def image_batch(self, seed: int) -> ImageBatch:
        """``images_per_step`` labelled frames, up to ``objects_per_image`` objects each."""
        rng = np.random.default_rng(seed)
        st = self.settings
        n = len(self.frames)  # fewer frames than images: the same frame, flipped or turned otherwise
        picks = rng.choice(n, size=st.images_per_step, replace=n < st.images_per_step)
        keys, images, owner, masks = [], [], [], []
        for b, p in enumerate(picks):
            stack, t = self.frames[int(p)]
            variant = self._variant(rng)
            small = _turn(self.stacks[stack].small_labels(t), variant)
            for i in _pick(*np.unique(small, return_counts=True), st.objects_per_image, rng):
                owner.append(b)
                masks.append(small == i)
            keys.append((stack, t, variant))
            if self.cache is None:
                images.append(self._pixels(stack, [t], variant, rng))
        owner_arr, masks_arr = np.asarray(owner), np.stack(masks)
        if self.cache is not None:
            return ImageBatch(torch.empty(0), owner_arr, masks_arr, features=self.cache.features(keys))
        return ImageBatch(torch.cat(images), owner_arr, masks_arr)

    def clip(self, seed: int) -> Clip:
        """``clip_length`` consecutive annotated frames of one stack, up to
        ``objects_per_clip`` objects of its first frame to track."""
        rng = np.random.default_rng(seed)
        st = self.settings
        stack, start, backwards = self.starts[int(rng.integers(len(self.starts)))]
        idx = np.arange(start, start + st.clip_length)
        if backwards:
            idx = idx[::-1]
        variant = self._variant(rng)
        s = self.stacks[stack]
        lab = _turn(np.stack([s.small_labels(int(t)) for t in idx]), variant)
        picked = _pick(*np.unique(lab[0], return_counts=True), st.objects_per_clip, rng)
        masks = np.stack([lab == i for i in picked], axis=1)  # (T, N, S, S)
        if self.cache is not None:
            feats = self.cache.features([(stack, int(t), variant) for t in idx])
            return Clip(torch.empty(0), masks, features=feats)
        return Clip(self._pixels(stack, [int(t) for t in idx], variant, rng), masks)


# --------------------------------------------------------------------------- training


def finetune(
    model: SAM2,
    pairs: Sequence[tuple[Any, Any]],
    out_dir: str | os.PathLike[str],
    settings: TrainSettings = FINETUNE_SETTINGS,
    *,
    freeze_encoder: bool = True,
    augment: bool = True,
    names: Sequence[str] | None = None,
    cache_mb: float = 2048.0,
    progress: bool = True,
    stop_after_minutes: float | None = None,
) -> SAM2:
    """Fine-tune ``model`` in place on labelled stacks; resumes from ``out_dir/last.pt``.

    Parameters
    ----------
    model
        E.g. from :func:`napari_sam2.weights.load_model` (its ``requires_grad`` is turned
        back on here).
    pairs
        (image, labels) pairs, as :class:`LabelledStack` takes them (or LabelledStack
        objects themselves).
    out_dir
        The run directory (``last.pt``, ``log.jsonl``); running again resumes from it.
    settings
        Steps, learning rate, batch sizes (default :data:`FINETUNE_SETTINGS`).
    freeze_encoder
        Keep the image encoder (:data:`ENCODER`) as it is and train on features computed
        once per frame (see the module docstring); False trains everything.
    augment
        Flips and 90-degree turns (plus gamma/contrast with a trained encoder).
    names
        How error messages name each pair (default "pair 1", "pair 2", ...).
    cache_mb
        At most this much memory for cached features (frozen encoder).
    stop_after_minutes
        Save ``last.pt`` and return after this much wall time (run again to go on).

    Returns
    -------
    SAM2
        The same model, in eval mode with ``requires_grad`` off, without the presence
        calibration the starting model may carry (``SAM2Config.presence_bias_t`` / ``_z``:
        it was chosen for the old weights).
    """
    size = model.config.image_size
    names = list(names) if names is not None else [f"pair {i + 1}" for i in range(len(pairs))]
    if len(names) != len(pairs):
        raise ValueError(f"{len(names)} names for {len(pairs)} pairs")
    stacks = [p if isinstance(p, LabelledStack) else LabelledStack(*p, size, name=n) for p, n in zip(pairs, names)]
    if not stacks:
        raise InputError("no labelled stacks to fine-tune on")
    if freeze_encoder:
        settings = dataclasses.replace(settings, freeze=tuple(dict.fromkeys((*settings.freeze, *ENCODER))))
    model.requires_grad_(True)
    cache = EncodedFrames(model, stacks, cache_mb) if freeze_encoder else None
    sampler = Sampler(stacks, settings, cache=cache, augment=augment)
    train(
        model,
        out_dir,
        settings,
        image_batches=sampler.image_batch,
        clips=sampler.clip if sampler.has_clips else None,
        progress=progress,
        stop_after_minutes=stop_after_minutes,
    )
    model.requires_grad_(False)
    model.config = model.config.architecture()
    return model
