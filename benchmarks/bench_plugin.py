"""The napari plugin's speed: click-to-preview latency, and propagation in the window vs the engine.

micro-sam turned its thread workers off after a "massive slowdown in napari >= 0.5" (its
issue #740). This measures our worker path against synchronous runs of the same job, on one
viewer and one session whose slices are encoded once beforehand (so every run does the same
tracking work), alternating the modes (rotated every repeat) so that they share the machine's load:

* ``engine``: ``VideoSession.propagate`` in the main thread, no Qt involved;
* ``thread``: the same generator in a plain ``threading.Thread``;
* ``widget-sync``: the widget's propagation with ``TaskRunner(synchronous=True)``;
* ``widget-worker``: the widget's propagation in napari's ``thread_worker`` (the default);
* ``widget-worker-follow``: the same with the viewer moved to every finished slice (a redraw
  per yielded frame, what a naive plugin does).

each with torch using 2 threads (this machine's cores) and 1 thread (``--threads``). Click
latency is timed on cached features for ``VideoSession.add_prompt`` (new object, 1 click),
``ImagePredictor`` (3 candidates) and the widget's whole path (a point added to the Points
layer -> preview layer updated); ``--clicks 0`` skips it.

The window is shown (``napari.Viewer(show=True)``, resized by ``--window``) with napari's real
status bar, so whatever the plugin starts there is painted as a user sees it: napari's
animated activity spinner (started by any napari ``progress``, as the plugin's jobs did
before issue 22) recomposes the whole window through software OpenGL on every frame. The
benchmark counts the spinner's frames and the napari ``progress`` objects made during each
mode, and reports the window's time over the engine's (``widget-worker`` / ``engine``, the
same prompts, slices encoded beforehand) as a ratio, with the CPU model and thread count.
Needs a display; run it alone on the machine, under Xvfb (software OpenGL, as on a machine
without GPU)::

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python benchmarks/bench_plugin.py \
        --model napari-sam2-cells --frames 16 --size 256 --repeat 5 --clicks 0 \
        --modes engine,widget-worker --threads 1,2 --out /tmp/plugin_after.json

``--src`` imports napari_sam2 from another checkout (e.g. a ``git worktree`` of an older
commit), so the same script measures the code before a change. ``--model small`` uses the
small test fixture model (256-pixel input), ``napari-sam2-cells`` the bundled model, an
official variant name a random-weight model of that size. Results go to ``--out``
(default benchmarks/results/plugin_<model>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

from common import REPO, machine

MODES = ("engine", "thread", "widget-sync", "widget-worker", "widget-worker-follow")


def build_model(name: str):
    import torch

    from napari_sam2 import load_model
    from napari_sam2.model import CONFIGS, SAM2

    if name == "small":
        d = REPO / "tests" / "fixtures" / "small_sam2.1"
        return load_model(d / "checkpoint.pt", config=d / "config.json")
    if name not in CONFIGS:  # the bundled model (napari-sam2-cells) or a checkpoint file
        return load_model(name)
    torch.manual_seed(0)
    return SAM2(CONFIGS[name]).eval().requires_grad_(False)


def frames_for(n: int, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    from napari_sam2.synthetic import fluorescence_timelapse

    stack = fluorescence_timelapse(n_frames=n, shape=(size, size), n_cells=5, seed=0)
    rows, cols = np.nonzero(stack.labels[0] == 1)
    return stack.image, (int(rows.mean()), int(cols.mean()))


def ms(xs: list[float]) -> float:
    return round(1000 * statistics.median(xs), 1)


class ActivityWatch:
    """Counts what napari's activity indicator does: spinner frames painted and napari
    ``progress`` objects made (each starts the spinner). Works with any version of the plugin."""

    def __init__(self, viewer) -> None:
        from napari.utils import progress

        self.frames = 0
        self.progress_made = 0
        indicator = viewer.window._qt_window.statusBar()._activity_item._inProgressIndicator
        self.indicator = indicator
        indicator.movie().frameChanged.connect(self._frame)
        progress._all_instances.events.changed.connect(self._progress)

    def _frame(self, _n: int) -> None:
        if self.indicator.isVisible():
            self.frames += 1

    def _progress(self, event) -> None:
        self.progress_made += len(event.added)

    def take(self) -> tuple[int, int]:
        out = (self.frames, self.progress_made)
        self.frames = self.progress_made = 0
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="small", help="'small' (test fixture), 'napari-sam2-cells' or an official variant name")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=256, help="frame side in pixels")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--clicks", type=int, default=20, help="click-latency samples (0: skip)")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {','.join(MODES)}")
    ap.add_argument("--threads", default="2,1", help="torch thread counts to run, comma-separated")
    ap.add_argument("--window", default="1600x1000", help="main window size WxH ('max': maximized)")
    ap.add_argument("--src", type=Path, default=None, help="import napari_sam2 from this src/ folder (an older checkout)")
    ap.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/plugin_<model>.json)")
    args = ap.parse_args()
    if args.src is not None:
        sys.path.insert(0, str(args.src.resolve()))
        for name in [m for m in sys.modules if m == "napari_sam2" or m.startswith("napari_sam2.")]:
            del sys.modules[name]
    modes = tuple(m for m in args.modes.split(",") if m)
    unknown = set(modes) - set(MODES)
    if unknown:
        ap.error(f"unknown mode(s) {sorted(unknown)}; choose from {MODES}")
    thread_counts = [int(t) for t in args.threads.split(",") if t]
    import torch

    torch.set_flush_denormal(True)  # before set_num_threads; the workers set it for their thread too

    import napari
    from qtpy.QtWidgets import QApplication

    import napari_sam2
    from napari_sam2._qt.widget import SAM2Widget
    from napari_sam2.engine.image import ImagePredictor

    print(f"napari_sam2 from {Path(napari_sam2.__file__).parent}")
    model = build_model(args.model)
    data, (row, col) = frames_for(args.frames, args.size)
    viewer = napari.Viewer(show=True)
    qt_window = viewer.window._qt_window
    if args.window == "max":
        qt_window.showMaximized()
    else:
        w, h = (int(v) for v in args.window.lower().split("x"))
        qt_window.resize(w, h)
    viewer.add_image(data, name="cells")
    watch = ActivityWatch(viewer)
    widget = SAM2Widget(viewer, synchronous=True)
    viewer.window.add_dock_widget(widget, name="SAM 2")
    seg = widget.segmenter
    seg.model = model
    seg.model_choice = widget.model.choice()
    widget.start()
    session = seg.session
    t0 = time.perf_counter()
    for t in range(args.frames):
        session.features.get(t)
    encode_s = (time.perf_counter() - t0) / args.frames
    viewer.dims.set_current_step(0, 0)
    QApplication.processEvents()
    window_size = (qt_window.width(), qt_window.height())

    # ---------------------------------------------------------------- click latency (cached features)
    seg.points.add([0, row, col])  # warm-up through the widget; also the prompt propagation starts from
    predictor = ImagePredictor(model)
    predictor.set_features(session.features.get(0), session.hw)
    clicks = {}
    for threads in thread_counts if args.clicks else ():
        torch.set_num_threads(threads)
        widget.runner.threads = threads
        add_prompt, predict, widget_click = [], [], []
        for i in range(args.clicks):
            x, y = col + (i % 3), row + (i % 2)
            t = time.perf_counter()
            session.add_prompt(0, 99, points=[[x, y]], labels=[1])
            add_prompt.append(time.perf_counter() - t)
            session.remove_object(99)
            t = time.perf_counter()
            predictor.predict([[x, y]], [1], multimask_output=True)
            predict.append(time.perf_counter() - t)
            t = time.perf_counter()
            seg.points.data = np.array([[0, row + (i % 2), col + (i % 3)]], dtype=float)  # move the click
            widget_click.append(time.perf_counter() - t)
        clicks[f"{threads}_threads"] = {
            "add_prompt_ms": ms(add_prompt),
            "image_predict_3_masks_ms": ms(predict),
            "widget_click_to_preview_ms": ms(widget_click),
        }
        print(f"click latency, cached features, {args.size}x{args.size}, {threads} thread(s): {clicks[f'{threads}_threads']}")

    # ---------------------------------------------------------------- propagation modes
    def fresh() -> None:
        seg.editor.reset()  # the session too: every prompt is new again
        seg.sync()

    def engine() -> None:
        for r in session.propagate(start=0):
            r.label_image()

    def in_thread() -> None:
        th = threading.Thread(target=lambda: (torch.set_flush_denormal(True), engine()))
        th.start()
        th.join()

    def via_widget(synchronous: bool, follow: bool) -> None:
        widget.runner.synchronous = synchronous
        seg.follow = follow
        seg.propagate("forward")
        widget.runner.wait(timeout=3600)
        seg.follow = False
        viewer.dims.set_current_step(0, 0)

    runs = {
        "engine": engine,
        "thread": in_thread,
        "widget-sync": lambda: via_widget(True, False),
        "widget-worker": lambda: via_widget(False, False),
        "widget-worker-follow": lambda: via_widget(False, True),
    }
    seconds: dict[str, dict[int, list[float]]] = {m: {t: [] for t in thread_counts} for m in modes}
    spinner: dict[str, dict[str, int]] = {m: {"spinner_frames": 0, "napari_progress_made": 0} for m in modes}
    loads = []
    fresh()
    engine()  # warm-up
    via_widget(False, False)  # warm-up of the worker path (thread pool, first layer refresh)
    watch.take()
    for rep in range(args.repeat):
        for threads in thread_counts:
            torch.set_num_threads(threads)
            widget.runner.threads = threads  # the widget's jobs set it in their worker thread
            for mode in modes[rep % len(modes) :] + modes[: rep % len(modes)]:  # rotate: share the load
                fresh()
                for _ in range(3):
                    QApplication.processEvents()
                watch.take()
                loads.append(os.getloadavg()[0])
                t = time.perf_counter()
                runs[mode]()
                seconds[mode][threads].append(time.perf_counter() - t)
                frames, made = watch.take()
                spinner[mode]["spinner_frames"] += frames
                spinner[mode]["napari_progress_made"] += made
        print(f"repeat {rep + 1}/{args.repeat} done (1-min load average {os.getloadavg()[0]:.1f})")

    per_frame = {m: {f"{k}_threads": round(statistics.median(v) / args.frames, 3) for k, v in d.items()} for m, d in seconds.items()}
    ratios = {}
    if "engine" in modes and "widget-worker" in modes:
        for k in thread_counts:
            ratios[f"{k}_threads"] = round(statistics.median(seconds["widget-worker"][k]) / statistics.median(seconds["engine"][k]), 2)
    info = machine()
    result = {
        "model": args.model,
        "frames": args.frames,
        "size": args.size,
        "repeat": args.repeat,
        "encode_seconds_per_frame": round(encode_s, 3),
        "click_latency": clicks,
        "propagation_seconds_per_frame_median": per_frame,
        "propagation_seconds_all_runs": {m: {str(k): [round(x, 3) for x in v] for k, v in d.items()} for m, d in seconds.items()},
        "window_over_engine": ratios,
        "napari_activity_during_runs": spinner,
        "window_size": list(window_size),
        "napari_sam2": str(Path(napari_sam2.__file__).parent),
        "load_average_during_runs": [round(x, 2) for x in loads],
        "machine": info,
        "date": time.strftime("%Y-%m-%d"),
    }
    out = args.out or REPO / "benchmarks" / "results" / f"plugin_{args.model}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"# {info['cpu']}, {info['cores']} cores, torch {info['torch']}; encode {encode_s:.2f} s/frame")
    print(f"# window {window_size[0]}x{window_size[1]}, {args.frames} frames of {args.size}x{args.size}, model {args.model}")
    heads = "".join(f"{f'{k} thread(s)':>13s}" for k in thread_counts)
    print(f"{'mode':22s}{heads}   s per propagated frame, median of {args.repeat}; spinner frames, napari progress made")
    for m in modes:
        cells = "".join(f"{per_frame[m][f'{k}_threads']:13.3f}" for k in thread_counts)
        print(f"{m:22s}{cells}   {spinner[m]['spinner_frames']:6d} {spinner[m]['napari_progress_made']:4d}")
    for k, r in ratios.items():
        print(f"window / engine, {k.replace('_', ' ')}: {r:.2f}x   ({info['cpu']}, torch threads {k.split('_')[0]})")
    print(f"load average during the runs: {min(loads):.1f} .. {max(loads):.1f}; written {out}")
    widget.close_session()
    viewer.close()


if __name__ == "__main__":
    main()
