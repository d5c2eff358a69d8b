"""Batch benchmark: stacks per minute on a local dask cluster vs one after another in one process.

The same synthetic stacks (uint16, two moving disks, one click per object on the middle
frame, propagated both ways) are segmented

- one after another in this process (model loaded beforehand, torch with all cores), and
- by ``napari-sam2 batch``'s code path on a ``LocalCluster`` of N single-threaded worker
  processes with cores / N torch threads each. "cold" counts from starting the cluster
  (worker start, imports and one model load per worker included); "warm" is a later run
  on the same cluster, with the models already loaded.

Sequential and warm runs alternate ``--repeat`` times, so that a change in machine load
hits both alike, and the best of each is kept (all are in the JSON).

Models: ``small`` is the 1.4 M-parameter random-weight test fixture (image size 256), which
shows the per-stack overhead; ``sam2.1_hiera_tiny`` is the full-size network (image size
1024) with random weights, which shows real per-frame compute. Run on an otherwise idle
machine::

    /work/venv/bin/python benchmarks/bench_batch.py [--models small sam2.1_hiera_tiny] [--workers 2] [--repeat 2]

Prints a table and writes benchmarks/results/batch.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from common import REPO, machine

from napari_sam2.runtime import configure_torch

FIXTURE = REPO / "tests" / "fixtures" / "small_sam2.1"


def make_stacks(folder: Path, n_stacks: int, n_frames: int, hw: tuple[int, int]) -> list[Path]:
    """``n_stacks`` .npy stacks of two moving disks on noise, with one JSON prompt file each."""
    from napari_sam2.io import Prompt, write_prompts_json

    h, w = hw
    yy, xx = np.mgrid[:h, :w]
    paths = []
    for i in range(n_stacks):
        rng = np.random.default_rng(i)
        stack = rng.normal(1000, 100, (n_frames, h, w)).astype(np.uint16)
        r = min(h, w) // 8
        for t in range(n_frames):
            stack[t][(yy - h // 2) ** 2 + (xx - w // 3 - t * w // 100) ** 2 < r * r] = 3000
            stack[t][(yy - h // 4 - t * h // 100) ** 2 + (xx - 3 * w // 4) ** 2 < r * r // 2] = 2500
        path = folder / f"stack{i:02d}.npy"
        np.save(path, stack)
        mid = n_frames // 2
        clicks = [(1, w // 3 + mid * w // 100, h // 2), (2, 3 * w // 4, h // 4 + mid * h // 100)]
        prompts = [Prompt(mid, obj, np.array([[x, y]], float), np.array([1]), None) for obj, x, y in clicks]
        write_prompts_json(folder / f"stack{i:02d}.json", prompts)
        paths.append(path)
    return paths


def checkpoint_for(model: str, folder: Path) -> tuple[str, str | None]:
    """(checkpoint, config) for the small fixture, or a seeded random full-size official variant."""
    if model == "small":
        return str(FIXTURE / "checkpoint.pt"), str(FIXTURE / "config.json")
    from napari_sam2.model import CONFIGS, SAM2

    torch.manual_seed(0)
    path = folder / f"{model}_random.pt"
    torch.save({"model": SAM2(CONFIGS[model]).state_dict()}, path)
    return str(path), None  # the variant is inferred from the tensors


def run(model: str, n_stacks: int, n_frames: int, hw: tuple[int, int], workers: int, repeat: int) -> dict:
    from napari_sam2 import batch, pipeline
    from napari_sam2.io import read_labels

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stacks = make_stacks(folder, n_stacks, n_frames, hw)
        checkpoint, config = checkpoint_for(model, folder)
        spec = pipeline.ModelSpec(checkpoint, config)
        template = pipeline.SegmentJob("", "", "", spec, direction="both")

        def jobs(out: str, threads: int | None = None) -> list[pipeline.SegmentJob]:
            planned = batch.plan_jobs(stacks, folder, folder / out, template)[0]
            return [replace(job, torch_threads=threads) for job in planned]

        def sequential(out: str) -> float:  # one after another, in this process
            t = time.perf_counter()
            for job in jobs(out):
                pipeline.segment_stack(job)
            return time.perf_counter() - t

        configure_torch(None)
        pipeline.cached_model(spec)  # both sides load the model once: here, or once per worker (in "cold")
        times: dict[str, list[float]] = {"sequential": [], "batch_warm": []}
        t = time.perf_counter()
        with batch.dask_client(f"local:{workers}", n_stacks=n_stacks) as (client, threads):
            outcomes = list(batch.run_batch(client, jobs("cold", threads)))
            cold = time.perf_counter() - t
            # alternate the two, so that a change in machine load hits both alike; keep the best
            for r in range(repeat):
                times["sequential"].append(sequential(f"sequential{r}"))
                t = time.perf_counter()
                outcomes += list(batch.run_batch(client, jobs(f"warm{r}", threads)))
                times["batch_warm"].append(time.perf_counter() - t)
        failed = [o.error for o in outcomes if o.status != "done"]
        assert not failed, failed
        assert {o.output for o in outcomes} == {str(folder / d / f"{s.stem}.zarr") for d in
                                                ["cold", *(f"warm{r}" for r in range(repeat))] for s in stacks}  # fmt: skip
        loads = {(o.result.pid, o.result.model_loads) for o in outcomes}
        differing, pixels = 0, 0
        for stack in stacks:
            name = stack.stem + ".zarr"
            sequential_labels, cold_labels, warm_labels = (
                np.asarray(read_labels(folder / out / name).data) for out in ("sequential0", "cold", "warm0")
            )
            assert np.array_equal(cold_labels, warm_labels), name  # same thread count: identical
            # other thread count: float sums differ, so a few pixels with logits near 0 may flip
            differing += int((sequential_labels != cold_labels).sum())
            pixels += sequential_labels.size
    per_min = lambda seconds: round(60 * n_stacks / seconds, 2)  # noqa: E731
    best = {k: min(v) for k, v in times.items()}
    return {
        "model": model,
        "stacks": n_stacks,
        "frames_per_stack": n_frames,
        "frame_hw": list(hw),
        "sequential": {"seconds": round(best["sequential"], 2), "stacks_per_min": per_min(best["sequential"]),
                       "all_seconds": [round(x, 2) for x in times["sequential"]],
                       "torch_threads": torch.get_num_threads()},  # fmt: skip
        "batch_cold": {"seconds": round(cold, 2), "stacks_per_min": per_min(cold), "workers": workers,
                       "torch_threads_per_worker": threads},  # fmt: skip
        "batch_warm": {"seconds": round(best["batch_warm"], 2), "stacks_per_min": per_min(best["batch_warm"]),
                       "all_seconds": [round(x, 2) for x in times["batch_warm"]]},  # fmt: skip
        "worker_pids_and_model_loads": sorted(loads),
        "label_pixels_differing_from_sequential": [differing, pixels],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["small", "sam2.1_hiera_tiny"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="alternating sequential / warm batch runs; best kept")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "batch.json")
    args = ap.parse_args()
    # (stacks, frames, (H, W)) per model: a few minutes in all on 2 cores
    sizes = {"small": (8, 12, (256, 256)), "sam2.1_hiera_tiny": (4, 6, (512, 512))}
    load_before = os.getloadavg()
    results = [run(m, *sizes.get(m, sizes["sam2.1_hiera_tiny"]), args.workers, args.repeat) for m in args.models]
    report = {
        "machine": machine(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d"),
        "command": "/work/venv/bin/python benchmarks/bench_batch.py " + " ".join(
            ["--models", *args.models, "--workers", str(args.workers), "--repeat", str(args.repeat)]),  # fmt: skip
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    print(f"{m['cpu']}, {m['cores']} cores, torch {m['torch']}; load average before {report['load_average_before']}")
    print(f"{'model':18} {'stacks x frames':>16} {'sequential':>18} {'batch cold':>18} {'batch warm':>18}")
    for r in results:
        cells = [f"{r[k]['seconds']:6.1f} s {r[k]['stacks_per_min']:5.1f}/min" for k in ("sequential", "batch_cold", "batch_warm")]
        size = f"{r['stacks']} x {r['frames_per_stack']} ({r['frame_hw'][0]}²)"
        print(f"{r['model']:18} {size:>16} " + " ".join(f"{c:>18}" for c in cells))
    print(f"sequential: 1 process, {results[0]['sequential']['torch_threads']} torch threads; batch: "
          f"{args.workers} worker processes x {results[0]['batch_cold']['torch_threads_per_worker']} torch threads")  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
