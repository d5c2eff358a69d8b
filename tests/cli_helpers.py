"""Helpers for the command-line tests: synthetic stacks, napari-written prompt files, running the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from napari_sam2.engine.session import VideoSession
from napari_sam2.io import Prompt

FIXTURE = Path(__file__).parent / "fixtures" / "small_sam2.1"
CHECKPOINT = FIXTURE / "checkpoint.pt"
CONFIG = FIXTURE / "config.json"
MODEL_ARGS = ["--checkpoint", str(CHECKPOINT), "--config", str(CONFIG)]

T, H, W = 6, 120, 160
# napari (frame, row, col) clicks on frame 2: object 1 (the left disk, plus a background
# click) and object 2 (the right disk)
POINTS = [[2, 60, 62], [2, 100, 20], [2, 36, 120]]
OBJECTS = [1, 1, 2]
POSITIVE = [True, False, True]


def make_stack(n_frames: int = T, seed: int = 0) -> np.ndarray:
    """(T, 120, 160) uint16: noise and two bright disks that move from frame to frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    stack = rng.normal(1000, 100, (n_frames, H, W)).astype(np.uint16)
    for t in range(n_frames):
        stack[t][(yy - 60) ** 2 + (xx - 50 - 4 * (t % 8)) ** 2 < 300] = 3000
        stack[t][(yy - 30 - 2 * (t % 8)) ** 2 + (xx - 120) ** 2 < 150] = 2500
    return stack


def napari_layers() -> ModuleType:
    """napari's layer classes with the builtin writers registered (no viewer, no Qt)."""
    from napari.plugins import _initialize_plugins

    _initialize_plugins()
    import napari.layers

    return napari.layers


def save_points_csv(path: Path, data: Sequence[Sequence[float]] = POINTS, objects: Sequence[int] = OBJECTS,
                    positive: Sequence[bool] = POSITIVE) -> Path:  # fmt: skip
    """A Points CSV exactly as napari writes it (``layer.save``), features ``object`` and ``positive``."""
    layer = napari_layers().Points(np.asarray(data, dtype=float), features={"object": list(objects), "positive": list(positive)})
    assert layer.save(str(path)) == [str(path)]
    return path


def save_shapes_csv(path: Path, rectangles: Sequence[np.ndarray]) -> Path:
    """A Shapes CSV exactly as napari writes it; each rectangle is (4, ndim) vertices."""
    assert napari_layers().Shapes(list(rectangles), shape_type="rectangle").save(str(path)) == [str(path)]
    return path


def run_cli(
    *args: str, entry_point: bool = False, timeout: float = 180, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess: ``python -m napari_sam2`` or the ``napari-sam2`` script."""
    if entry_point:
        script = Path(sys.executable).parent / "napari-sam2"
        assert script.is_file(), f"{script} is missing: pip install -e . to create the console script"
        command = [str(script), *args]
    else:
        command = [sys.executable, "-m", "napari_sam2", *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}  # never the network
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str, code: int = 2) -> str:
    """Exit ``code``, exactly one stderr line ``napari-sam2: error: ...`` containing ``needles``, no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("napari-sam2: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary stores a writer left behind in ``folder``."""
    return sorted(p.name for p in folder.glob("*.partial-*"))


def reference_labels(
    model: object, frames: np.ndarray, prompts: Sequence[Prompt], direction: str = "both", compute_dtype: str = "float32"
) -> np.ndarray:
    """Labels from a VideoSession driven by hand: what ``segment`` must write (in the precision
    it wrote them in: ``auto`` is bfloat16 on some machines)."""
    out = np.zeros(frames.shape[:3], dtype=np.uint16)
    with VideoSession(model, frames, corrections_as_conditioning=True, compute_dtype=compute_dtype) as session:
        for p in prompts:
            session.add_prompt(p.frame, p.obj_id, points=p.points_xy, labels=p.labels, box=p.box)
        first, last = min(p.frame for p in prompts), max(p.frame for p in prompts)
        assert last > 0, "the tests prompt past frame 0"
        runs = {
            "forward": [session.propagate(start=first)],
            "backward": [session.propagate(start=last, reverse=True)],
            "both": [session.propagate(start=first), session.propagate(start=first, reverse=True)],
        }[direction]
        for run in runs:
            for result in run:
                out[result.frame] = result.label_image(np.uint16)
    return out
