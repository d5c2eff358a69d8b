"""The napari plugin's speed: click-to-preview latency, and propagation in a thread worker vs inline.

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

each with torch using 2 threads (this machine's cores) and 1 thread. Click latency is timed
on cached features for ``VideoSession.add_prompt`` (new object, 1 click), ``ImagePredictor``
(3 candidates) and the widget's whole path (a point added to the Points layer -> preview layer
updated). Needs a display: run under Xvfb::

    xvfb-run -a -s "-screen 0 1280x1024x24" /work/venv/bin/python benchmarks/bench_plugin.py \
        --model sam2.1_hiera_tiny --frames 8 --size 512 --repeat 3

``--model small`` uses the small test fixture model (256-pixel input) instead of a random-weight
official variant. Results go to benchmarks/results/plugin_<model>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time

import numpy as np
import torch

from common import REPO, machine

MODES = ("engine", "thread", "widget-sync", "widget-worker", "widget-worker-follow")


def build_model(name: str):
    from napari_sam2 import load_model
    from napari_sam2.model import CONFIGS, SAM2

    if name == "small":
        d = REPO / "tests" / "fixtures" / "small_sam2.1"
        return load_model(d / "checkpoint.pt", config=d / "config.json")
    torch.manual_seed(0)
    return SAM2(CONFIGS[name]).eval().requires_grad_(False)


def frames_for(n: int, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    from napari_sam2.data.synthetic import fluorescence_timelapse

    stack = fluorescence_timelapse(n_frames=n, shape=(size, size), n_cells=5, seed=0)
    rows, cols = np.nonzero(stack.labels[0] == 1)
    return stack.image, (int(rows.mean()), int(cols.mean()))


def ms(xs: list[float]) -> float:
    return round(1000 * statistics.median(xs), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="small", help="'small' (test fixture) or an official variant name")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=256, help="frame side in pixels")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--clicks", type=int, default=20)
    args = ap.parse_args()
    torch.set_flush_denormal(True)  # before set_num_threads; the workers set it for their thread too

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_sam2._qt.widget import SAM2Widget
    from napari_sam2.engine.image import ImagePredictor

    model = build_model(args.model)
    data, (row, col) = frames_for(args.frames, args.size)
    viewer = napari.Viewer(show=True)
    viewer.add_image(data, name="cells")
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

    # ---------------------------------------------------------------- click latency (cached features)
    seg.points.add([0, row, col])  # warm-up through the widget
    predictor = ImagePredictor(model)
    predictor.set_features(session.features.get(0), session.hw)
    clicks = {}
    for threads in (2, 1):
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
        session.reset()
        seg.propagated.clear()
        seg.coverage.clear()
        seg._applied.clear()
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
    seconds: dict[str, dict[int, list[float]]] = {m: {2: [], 1: []} for m in MODES}
    loads = []
    fresh()
    engine()  # warm-up
    for rep in range(args.repeat):
        for threads in (2, 1):
            torch.set_num_threads(threads)
            widget.runner.threads = threads  # the widget's jobs set it in their worker thread
            for mode in MODES[rep % len(MODES) :] + MODES[: rep % len(MODES)]:  # rotate: share the load
                fresh()
                QApplication.processEvents()
                loads.append(os.getloadavg()[0])
                t = time.perf_counter()
                runs[mode]()
                seconds[mode][threads].append(time.perf_counter() - t)
        print(f"repeat {rep + 1}/{args.repeat} done (1-min load average {os.getloadavg()[0]:.1f})")

    per_frame = {m: {f"{k}_threads": round(statistics.median(v) / args.frames, 3) for k, v in d.items()} for m, d in seconds.items()}
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
        "load_average_during_runs": [round(x, 2) for x in loads],
        "machine": info,
        "date": time.strftime("%Y-%m-%d"),
    }
    out = REPO / "benchmarks" / "results" / f"plugin_{args.model}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"# {info['cpu']}, {info['cores']} cores, torch {info['torch']}; encode {encode_s:.2f} s/frame")
    print(f"{'mode':22s} {'2 threads':>10s} {'1 thread':>10s}   (s per propagated frame, median of {args.repeat})")
    for m in MODES:
        print(f"{m:22s} {per_frame[m]['2_threads']:10.3f} {per_frame[m]['1_threads']:10.3f}")
    print(f"load average during the runs: {min(loads):.1f} .. {max(loads):.1f}; written {out}")
    widget.close_session()
    viewer.close()


if __name__ == "__main__":
    main()
