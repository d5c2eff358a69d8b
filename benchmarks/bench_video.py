"""Video propagation benchmark: seconds per frame with a full memory bank, ours vs official.

Same random weights (sam2.1_hiera_tiny by default), same frames, same thread count, one run.
Per-frame time is the wall time to produce one yielded frame of a forward propagation
after one click on frame 0 (it includes encoding that frame), taken once the memory bank
is full (frame >= num_maskmem). The official run and ours (float32, bfloat16) advance in
turn, frame by frame, so that they share the same machine load (``--sequential``: one
after another, as a user runs them; on an idle machine this is the number to quote, as
running three models in turn thrashes the caches). Also reports the mask IoU of every
frame against the official.
Run with the side environment that has the official package, on an idle machine::

    $HOME/sam2-ref/bin/python benchmarks/bench_video.py [--frames 12] [--size 512] [--objects 1]

Results go to benchmarks/results/video_<model>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from common import REPO, have_reference, load_fixture_script, machine, median, official_video_state

sys.path.insert(0, str(REPO / "tests"))
from parity import mask_iou  # noqa: E402


def lockstep(gens: dict) -> dict:
    """Advance several propagations one frame at a time, in turn, timing each step.

    Running them interleaved exposes all of them to the same machine load.
    Returns name -> (frame order, seconds per frame, masks per frame).
    """
    out = {name: ([], [], []) for name in gens}
    live = dict(gens)
    while live:
        for name, gen in list(live.items()):
            t = time.perf_counter()
            try:
                frame, masks = next(gen)
            except StopIteration:
                del live[name]
                continue
            order, secs, all_masks = out[name]
            order.append(frame)
            secs.append(time.perf_counter() - t)
            all_masks.append(masks)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sam2.1_hiera_tiny")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--size", type=int, default=512, help="frame side in pixels")
    ap.add_argument("--objects", type=int, default=1, help="objects tracked: 1 (a click), 2 (+ a box), more: clicks on a grid")
    ap.add_argument("--skip-official", action="store_true")
    ap.add_argument(
        "--sequential", action="store_true", help="run official, float32, bfloat16 one after another (not in turn)"
    )
    args = ap.parse_args()
    torch.set_flush_denormal(True)

    from napari_sam2.engine.session import VideoSession
    from napari_sam2.model import CONFIGS, SAM2

    cfg = CONFIGS[args.model]
    tools = load_fixture_script("make_video_fixtures") if have_reference() else None
    if tools is None:
        sys.exit("this benchmark needs the official sam2 package (see tests/fixtures/README.md)")
    h = w = args.size
    frames = tools.make_frames(args.frames, h, w, seed=0)
    prompts = tools.make_prompts(h, w)
    click = (prompts["add1_points"], prompts["add1_labels"])
    box = prompts["add2_box"]
    side = int(np.ceil(np.sqrt(max(args.objects - 2, 1))))
    grid = np.linspace(0.15, 0.85, side)
    more = [np.array([[x * w, y * h]], np.float32).round() for y in grid for x in grid][: max(args.objects - 2, 0)]

    official = tools.build_video_predictor(cfg, False, seed=0)
    state_dict = official.state_dict()
    results: dict = {"frames": args.frames, "size": args.size, "objects": args.objects}

    gens = {}
    if not args.skip_official:
        state = official_video_state(tools, official, frames, cfg.image_size)
        official.add_new_points_or_box(state, 0, 1, points=click[0], labels=click[1])
        if args.objects >= 2:
            official.add_new_points_or_box(state, 0, 2, box=box)
        for i, xy in enumerate(more, start=3):
            official.add_new_points_or_box(state, 0, i, points=xy, labels=np.array([1], np.int32))
        gens["official"] = ((f, (m[:, 0] > 0).cpu().numpy()) for f, _, m in official.propagate_in_video(state))

    ours = SAM2(cfg).eval().requires_grad_(False)
    ours.load_state_dict(state_dict)
    sessions = []
    for dtype in ("float32", "bfloat16"):
        session = VideoSession(ours, frames, fill_hole_area=0, compute_dtype=dtype)
        session.add_prompt(0, 1, points=click[0], labels=click[1])
        if args.objects >= 2:
            session.add_prompt(0, 2, box=box)
        for i, xy in enumerate(more, start=3):
            session.add_prompt(0, i, points=xy, labels=[1])
        gens[dtype] = ((r.frame, r.masks) for r in session.propagate())
        sessions.append(session)

    if args.sequential:
        runs = {}
        for name, gen in gens.items():
            runs.update(lockstep({name: gen}))
    else:
        runs = lockstep(gens)
    results["mode"] = "sequential" if args.sequential else "in turn"
    ref_masks = runs["official"][2] if "official" in runs else None
    for name, (order, secs, masks) in runs.items():
        entry = {"order": order, "seconds": secs}
        if ref_masks is not None and name != "official":
            entry["iou"] = [mask_iou(a[o], b[o]) for a, b in zip(masks, ref_masks) for o in range(a.shape[0])]
        results[name] = entry
    for session in sessions:
        session.close()

    full = cfg.num_maskmem  # frames >= this see a full bank (1 conditioning + 6 recent)
    info = machine()
    print(f"# video benchmark: {args.model}, random weights, {args.frames} frames {h}x{w}, {args.objects} object(s)")
    print(f"# {info['cpu']}, {info['cores']} cores, torch {info['torch']} with {info['torch_threads']} threads")
    ref_s = median(results["official"]["seconds"][full:]) if "official" in results else None
    for name in ("official", "float32", "bfloat16"):
        if name not in results:
            continue
        r = results[name]
        s = median(r["seconds"][full:])
        r["median_seconds_full_bank"] = s
        line = f"{name:9s} {s:7.2f} s/frame (frames >= {full})"
        if ref_s and name != "official":
            r["speedup"] = ref_s / s
            line += f"  {ref_s / s:5.2f}x faster"
        if "iou" in r:
            line += f"  mask IoU vs official: min {min(r['iou']):.4f} mean {np.mean(r['iou']):.4f}"
            r["iou_min"], r["iou_mean"] = min(r["iou"]), float(np.mean(r["iou"]))
        if name != "official" and "official" in results:
            r["same_order"] = r["order"] == results["official"]["order"]
        print(line)
    tag = "_sequential" if args.sequential else ""
    out = REPO / "benchmarks" / "results" / f"video_{args.model}_{args.objects}obj{tag}.json"
    out.write_text(json.dumps({"machine": info, "model": args.model, "results": results}, indent=2) + "\n")
    print(f"# written {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
