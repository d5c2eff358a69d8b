"""The 3 masks SAM 2 proposes for one ambiguous click, for the user to cycle through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..prompt import Prompt


@dataclass
class Candidates:
    """The multimask candidates of one single click, best predicted IoU first.

    Index 0 is SAM 2's own choice (the session's mask for that click, up to hole filling);
    1 and 2 are the others, given to the session as mask prompts when chosen.
    """

    prompt: Prompt  # the single click they belong to
    masks: np.ndarray  # (3, H, W) bool
    scores: np.ndarray  # (3,) predicted IoU
    index: int = 0

    def info(self) -> str:
        return f"mask {self.index + 1}/{len(self.scores)} (predicted IoU {self.scores[self.index]:.2f})"


def compute_candidates(model: Any, features: Any, hw: tuple[int, int], prompt: Prompt) -> Candidates:
    """Decode the 3 candidates of a single click from a slice's cached features (no memory)."""
    from ..engine.image import ImagePredictor

    predictor = ImagePredictor(model)
    predictor.set_features(features, hw)
    masks, scores, _ = predictor.predict(prompt.points_xy, prompt.labels, multimask_output=True)
    order = np.argsort(-scores, kind="stable")
    return Candidates(prompt=prompt, masks=masks[order], scores=scores[order])


def next_candidate(
    current: Candidates | None, prompt: Prompt, model: Any, session: Any, hw: tuple[int, int]
) -> Candidates:
    """The candidates of ``prompt`` turned to the next mask (decoded first if ``current`` is for another click)."""
    cand = current
    if cand is None or cand.prompt != prompt:
        cand = compute_candidates(model, session.features.get(prompt.frame), hw, prompt)
    cand.index = (cand.index + 1) % len(cand.scores)
    return cand
