"""Segment everything on a large 2-D image in tiles: peak RSS and time against the number of tiles.

A synthetic uint16 image (nuclei, ``napari_sam2.synthetic.cells_image`` rendered block by block)
is written to a temporary zarr store (chunks of one tile) and read lazily; the labels go to a
zarr store on disk too, so neither the image nor the labels are held in RAM. Square crops of
it (1024², 2048², 4096², 8192²: 1, 4, 16, 64 tiles of 1024) are segmented with
``engine.tiles.segment_tiled`` and the grid ``AutomaticMaskGenerator`` on the shipped model
(``napari-sam2-cells``, 256-pixel input), each in a fresh subprocess that reports its peak RSS
(ru_maxrss) and seconds.

    .venv/bin/python benchmarks/bench_tiles.py [--sizes 1024 2048 4096 8192] [--tile 1024]
        [--halo 32] [--points-per-side 16] [--threads 1]

Results: benchmarks/results/tiles.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, machine

#: side of the blocks the synthetic image is rendered in (each its own cells_image)
BLOCK = 2048


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Crop:
    """The top-left ``side`` x ``side`` of a lazy array, still lazy (slices pass through)."""

    def __init__(self, array, side: int) -> None:
        self.array, self.side = array, side
        self.shape = (side, side) + tuple(array.shape[2:])
        self.dtype = array.dtype

    def __getitem__(self, key):
        ys, xs = key[:2]
        y0, y1, _ = ys.indices(self.side)
        x0, x1, _ = xs.indices(self.side)
        return self.array[y0:y1, x0:x1]


def make_image(path: Path, side: int, tile: int) -> str:
    """A (side, side) uint16 zarr of nuclei, rendered BLOCK x BLOCK at a time (radius 40-70 px)."""
    import zarr

    from napari_sam2.synthetic import cells_image

    z = zarr.create_array(str(path), shape=(side, side), chunks=(tile, tile), dtype="uint16")
    b = min(BLOCK, side)
    k = 0
    for y in range(0, side, b):
        for x in range(0, side, b):
            n = int(0.3 * b * b / (math.pi * 55.0**2))  # about 30% of the area covered
            s = cells_image((b, b), n, seed=k, radius=(40.0, 70.0), styles=("nucleus",))
            z[y : y + b, x : x + b] = s.image
            k += 1
    return str(path)


def child(store: str, side: int, tile: int, halo: int, pps: int, threads: int, out_dir: str) -> dict:
    import torch
    import zarr

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    import napari_sam2
    from napari_sam2.engine.automatic import AutomaticMaskGenerator
    from napari_sam2.engine.tiles import segment_tiled

    model = napari_sam2.load_model("napari-sam2-cells")
    gen = AutomaticMaskGenerator(model, points_per_side=pps)
    base = _peak_mib()
    image = Crop(zarr.open_array(store, mode="r"), side)
    out = zarr.create_array(
        str(Path(out_dir) / f"labels{side}.zarr"), shape=(side, side), chunks=(tile, tile), dtype="uint32"
    )
    t = time.perf_counter()
    res = segment_tiled(gen, image, tile=tile, halo=halo, out=out)
    secs = time.perf_counter() - t
    return {
        "side": side,
        "tiles": res.n_tiles,
        "objects": res.n_objects,
        "stitched": res.stitched,
        "seconds": secs,
        "seconds_per_tile": secs / res.n_tiles,
        "peak_rss_mib": _peak_mib(),
        "rss_after_model_mib": base,
    }


def run_child(*args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + str(REPO / "benchmarks"))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    out = subprocess.run([sys.executable, __file__, "--child", *args], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--halo", type=int, default=32)
    ap.add_argument("--points-per-side", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    info = machine()
    load = os.getloadavg()[0]
    if load >= 0.5:
        print(f"# warning: load average {load:.2f} (>= 0.5): the times include other work", file=sys.stderr)
    print(f"# {info['cpu']}, {info['cores']} cores, torch {info['torch']} with {info['torch_threads']} threads")
    rows = []
    with tempfile.TemporaryDirectory(prefix="napari-sam2-bench-tiles-") as tmp:
        side = max(args.sizes)
        t = time.perf_counter()
        store = make_image(Path(tmp) / "image.zarr", side, args.tile)
        print(f"# synthetic {side}x{side} uint16 image written in {time.perf_counter() - t:.0f} s")
        for s in sorted(args.sizes):
            r = run_child(store, str(s), str(args.tile), str(args.halo), str(args.points_per_side), str(args.threads), tmp)
            rows.append(r)
            print(
                f"{s:5d}^2: {r['tiles']:3d} tiles {r['seconds']:7.1f} s ({r['seconds_per_tile']:.2f} s/tile), "
                f"peak RSS {r['peak_rss_mib']:6.0f} MiB (model loaded: {r['rss_after_model_mib']:.0f}), "
                f"{r['objects']} objects, {r['stitched']} stitches",
                flush=True,
            )
    per_tile = [r["seconds_per_tile"] for r in rows]
    print(f"# seconds per tile from {min(per_tile):.2f} to {max(per_tile):.2f}")
    fit = None
    if len(rows) >= 2:  # seconds = fixed + per_tile * tiles, least squares
        n = [r["tiles"] for r in rows]
        secs = [r["seconds"] for r in rows]
        mean_n, mean_s = sum(n) / len(n), sum(secs) / len(secs)
        slope = sum((a - mean_n) * (b - mean_s) for a, b in zip(n, secs)) / sum((a - mean_n) ** 2 for a in n)
        fixed = mean_s - slope * mean_n
        worst = max(abs(b - (fixed + slope * a)) / b for a, b in zip(n, secs))
        fit = {"fixed_seconds": fixed, "seconds_per_tile": slope, "worst_relative_residual": worst}
        print(f"# linear fit: {fixed:.1f} s + {slope:.2f} s per tile (worst residual {100 * worst:.0f}%)")
    result = {
        "machine": info,
        "load_average_at_start": load,
        "model": "napari-sam2-cells",
        "image": "uint16 zarr, chunks of one tile; nuclei radius 40-70 px; labels to a zarr store",
        "tile": args.tile,
        "halo": args.halo,
        "points_per_side": args.points_per_side,
        "rows": rows,
        "linear_fit": fit,
    }
    out = REPO / "benchmarks" / "results" / "tiles.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"# written {out.relative_to(REPO)}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        a = sys.argv[2:]
        print(json.dumps(child(a[0], int(a[1]), int(a[2]), int(a[3]), int(a[4]), int(a[5]), a[6])))
    else:
        main()
