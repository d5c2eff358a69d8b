"""Peak memory of propagation: flat in stack length, bounded on long stacks.

Each measurement runs in a fresh subprocess and reports its peak RSS (ru_maxrss):

* ``lazy``: a uint16 zarr stack of 16 and of 256 frames (256x256), one click, 4 frames
  propagated -- our session reads frames lazily, so the two should cost the same.
  With the official package importable, the official ``init_state`` on the same
  stacks is measured too (it holds every preprocessed frame in RAM).
* ``long``: a 300-frame stack, 3 objects, a full forward propagation, with the default
  RAM budgets (features 1 GiB, outputs 512 MiB; the rest spills to a temp dir).

    .venv/bin/python benchmarks/bench_memory.py lazy
    .venv/bin/python benchmarks/bench_memory.py long [--frames 300] [--dtype bfloat16]

Random-weight sam2.1_hiera_tiny (1024 input). Results: benchmarks/results/memory_*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, have_reference, machine


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_ours(store: str, n_objects: int, n_prop: int | None, dtype: str) -> dict:
    import numpy as np
    import torch
    import zarr

    from napari_sam2.engine.session import VideoSession
    from napari_sam2.model import CONFIGS, SAM2

    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    model = SAM2(CONFIGS["sam2.1_hiera_tiny"]).eval().requires_grad_(False)
    base = _peak_mib()
    frames = zarr.open_array(store, mode="r")
    session = VideoSession(model, frames, compute_dtype=dtype)
    h, w = frames.shape[1:3]
    for k in range(n_objects):
        session.add_prompt(0, k + 1, points=[[w * (k + 1) / (n_objects + 1), h / 2]], labels=[1])
    t = time.perf_counter()
    n = 0
    labels_checksum = 0
    for r in session.propagate(max_frames=n_prop):
        n += 1
        labels_checksum += int(r.label_image().astype(np.int64).sum() % 1000)
    secs = time.perf_counter() - t
    out = {
        "frames_in_stack": frames.shape[0],
        "frames_propagated": n,
        "objects": n_objects,
        "dtype": dtype,
        "seconds": secs,
        "peak_rss_mib": _peak_mib(),
        "rss_after_model_mib": base,
        "feature_store_ram_mib": session.features.store.peak_ram_bytes / 2**20,
        "feature_store_disk_mib": session.features.store.disk_bytes / 2**20,
        "output_store_disk_mib": session.outputs.disk_bytes / 2**20,
    }
    session.close()
    return out


def child_official(store: str) -> dict:
    import numpy as np
    import torch
    import zarr

    from common import load_fixture_script

    from napari_sam2.model import CONFIGS

    tools = load_fixture_script("make_video_fixtures")
    model = tools.build_video_predictor(CONFIGS["sam2.1_hiera_tiny"], False, seed=0)
    base = _peak_mib()
    frames = zarr.open_array(store, mode="r")
    lo, hi = np.percentile(frames[0], (1, 99.8))
    rgb = [np.repeat((np.clip((frames[t] - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)[..., None], 3, -1)
           for t in range(frames.shape[0])]  # fmt: skip
    images = tools.preprocess(np.stack(rgb), 1024, tools.mf.DEFAULT_SHIM)  # what init_state holds
    del rgb
    with tools.frames_loader(images, *frames.shape[1:3]), torch.inference_mode():
        model.init_state(video_path="<bench>")
    return {"frames_in_stack": frames.shape[0], "peak_rss_mib": _peak_mib(), "rss_after_model_mib": base}


def make_stack(path: Path, n: int, side: int = 256) -> str:
    import numpy as np
    import zarr

    rng = np.random.default_rng(0)
    z = zarr.create_array(str(path), shape=(n, side, side), chunks=(1, side, side), dtype="uint16")
    yy, xx = np.mgrid[0:side, 0:side]
    for t in range(n):
        img = 200 + 50 * rng.random((side, side))
        for k in range(3):
            cx, cy = side * (k + 1) / 4 + 2 * np.sin(t / 7 + k), side / 2 + 3 * np.cos(t / 5 + k)
            img += 3000 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (side / 14) ** 2))
        z[t] = img.astype(np.uint16)
    return str(path)


def run_child(*args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + str(REPO / "benchmarks"))
    out = subprocess.run([sys.executable, __file__, "--child", *args], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("lazy", "long"))
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--objects", type=int, default=3)
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    args = ap.parse_args()
    info = machine()
    print(f"# {info['cpu']}, {info['cores']} cores, torch {info['torch']} with {info['torch_threads']} threads")
    results: dict = {"machine": info, "mode": args.mode}
    with tempfile.TemporaryDirectory(prefix="napari-sam2-bench-") as tmp:
        if args.mode == "lazy":
            rows = []
            for n in (16, 256):
                store = make_stack(Path(tmp) / f"stack{n}.zarr", n)
                r = run_child("ours", store, "1", "3", args.dtype)
                rows.append(("ours", r))
                if have_reference():
                    rows.append(("official init_state", run_child("official", store)))
            for name, r in rows:
                print(f"{name:20s} {r['frames_in_stack']:4d} frames: peak RSS {r['peak_rss_mib']:8.0f} MiB")
            ours = {r["frames_in_stack"]: r["peak_rss_mib"] for name, r in rows if name == "ours"}
            print(f"ours: 256 frames cost {ours[256] - ours[16]:+.0f} MiB more than 16 frames")
            results["rows"] = [{"who": name, **r} for name, r in rows]
        else:
            store = make_stack(Path(tmp) / "long.zarr", args.frames)
            r = run_child("ours", store, str(args.objects), "0", args.dtype)
            print(
                f"ours {r['frames_propagated']} frames x {r['objects']} objects ({r['dtype']}): peak RSS "
                f"{r['peak_rss_mib']:.0f} MiB, {r['seconds'] / r['frames_propagated']:.2f} s/frame, "
                f"features spilled {r['feature_store_disk_mib']:.0f} MiB, outputs spilled {r['output_store_disk_mib']:.0f} MiB"
            )
            results["run"] = r
    out = REPO / "benchmarks" / "results" / f"memory_{args.mode}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"# written {out.relative_to(REPO)}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        who = sys.argv[2]
        if who == "ours":
            n_prop = int(sys.argv[5])
            res = child_ours(sys.argv[3], int(sys.argv[4]), None if n_prop == 0 else n_prop, sys.argv[6])
        else:
            res = child_official(sys.argv[3])
        print(json.dumps(res))
    else:
        main()
