"""Where one tracked frame's time goes: ours (float32, bfloat16) and the official, by module.

The official ``SAM2VideoPredictor`` and our model have the same four heavy modules under
the same names (``image_encoder``, ``memory_attention``, ``memory_encoder``,
``sam_mask_decoder``). Each is wrapped with a wall-clock timer, and the cross-attention
of every memory-attention layer too (``cross_attn_image``). One object is clicked on frame
0 and tracked forward; the times are the median over the frames that see a full memory
bank (frame >= num_maskmem). "fused kernel" is ``scaled_dot_product_attention`` alone on
the full-bank cross-attention shape (4096 queries x 7 x 4096 + 64 keys, width 256, one
head), times the number of layers: a floor under ``cross_attn`` for any implementation
that computes the exact attention with this kernel.

Run alone on an idle machine, with the side environment that has the official package::

    $HOME/sam2-ref/bin/python benchmarks/bench_breakdown.py [--frames 10] [--skip-official]

Results go to benchmarks/results/breakdown_<model>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict

import torch
import torch.nn.functional as F

from common import REPO, have_reference, load_fixture_script, machine, median, official_video_state, timeit

MODULES = ("image_encoder", "memory_attention", "memory_encoder", "sam_mask_decoder")


class Timers:
    """Accumulates wall time per name for wrapped module calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, module: torch.nn.Module, name: str) -> None:
        forward = module.forward

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return forward(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t

        module.forward = timed

    def instrument(self, model: torch.nn.Module) -> None:
        for name in MODULES:
            self.wrap(getattr(model, name), name)
        for layer in model.memory_attention.layers:
            self.wrap(layer.cross_attn_image, "cross_attn")

    def take(self) -> dict[str, float]:
        out = dict(self.seconds)
        self.seconds.clear()
        return out


def per_frame(gen, timers: Timers) -> tuple[list[float], list[dict[str, float]]]:
    """Run a propagation generator to the end: wall time and module times of every frame."""
    walls, parts = [], []
    timers.take()
    while True:
        t = time.perf_counter()
        try:
            next(gen)
        except StopIteration:
            return walls, parts
        walls.append(time.perf_counter() - t)
        parts.append(timers.take())


def summarise(walls: list[float], parts: list[dict[str, float]], first_full: int) -> dict[str, float]:
    names = sorted({k for p in parts[first_full:] for k in p})
    out = {"frame": median(walls[first_full:])}
    for name in names:
        out[name] = median([p.get(name, 0.0) for p in parts[first_full:]])
    out["other"] = out["frame"] - sum(out.get(n, 0.0) for n in MODULES)
    return out


def fused_kernel_seconds(dtype: torch.dtype, layers: int, repeat: int = 3) -> float:
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 1, 4096, 256, generator=g).to(dtype)
    k = torch.randn(1, 1, 7 * 4096 + 64, 256, generator=g).to(dtype)
    v = torch.randn(1, 1, 7 * 4096 + 64, 256, generator=g).to(dtype)
    with torch.inference_mode():
        seconds = timeit(lambda: F.scaled_dot_product_attention(q, k, v), repeat)
    return sum(seconds) / repeat * layers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sam2.1_hiera_tiny")
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--size", type=int, default=512, help="frame side in pixels")
    ap.add_argument("--skip-official", action="store_true")
    args = ap.parse_args()
    torch.set_flush_denormal(True)

    from napari_sam2.engine.session import VideoSession
    from napari_sam2.model import CONFIGS, SAM2

    cfg = CONFIGS[args.model]
    if not have_reference():
        sys.exit("this benchmark needs the official sam2 package (see tests/fixtures/README.md)")
    tools = load_fixture_script("make_video_fixtures")
    h = w = args.size
    frames = tools.make_frames(args.frames, h, w, seed=0)
    click = tools.make_prompts(h, w)
    points, labels = click["add1_points"], click["add1_labels"]
    official = tools.build_video_predictor(cfg, False, seed=0)
    state_dict = official.state_dict()
    full = cfg.num_maskmem
    results: dict = {}

    if not args.skip_official:
        timers = Timers()
        timers.instrument(official)
        state = official_video_state(tools, official, frames, cfg.image_size)
        official.add_new_points_or_box(state, 0, 1, points=points, labels=labels)
        results["official"] = summarise(*per_frame(official.propagate_in_video(state), timers), full)
    del official

    ours = SAM2(cfg).eval().requires_grad_(False)
    ours.load_state_dict(state_dict)
    timers = Timers()
    timers.instrument(ours)
    for dtype in ("float32", "bfloat16"):
        with VideoSession(ours, frames, fill_hole_area=0, compute_dtype=dtype) as session:
            session.add_prompt(0, 1, points=points, labels=labels)
            results[dtype] = summarise(*per_frame(session.propagate(), timers), full)
    layers = cfg.memory_attention_layers
    kernels = {name: fused_kernel_seconds(getattr(torch, name), layers) for name in ("float32", "bfloat16")}
    info = machine()
    print(f"# {args.model}, random weights, {args.frames} frames {h}x{w}, 1 object; median s per full-bank frame")
    print(f"# {info['cpu']}, {info['cores']} cores, torch {info['torch']} with {info['torch_threads']} threads")
    cols = ("frame", *MODULES, "cross_attn", "other")
    print(f"{'':10s}" + "".join(f"{c[:16]:>17s}" for c in cols))
    for name, r in results.items():
        print(f"{name:10s}" + "".join(f"{r.get(c, 0.0):17.3f}" for c in cols))
    for name, s in kernels.items():
        print(f"fused kernel alone, {layers} full-bank cross-attention layers, {name}: {s:.3f} s")
    out = REPO / "benchmarks" / "results" / f"breakdown_{args.model}.json"
    record = {"machine": info, "model": args.model, "frames": args.frames, "size": args.size,
              "median_seconds": results, "fused_cross_attention_kernel_seconds": kernels}
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"# written {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
