"""Image path benchmark: encoder seconds per 1024x1024 frame and predict latency.

Ours against the official SAM 2 (``sam2`` 1.1.0) on the same random weights, in one
run, same threads. Run it with the side environment that has the official package
(tests/fixtures/README.md), on an otherwise idle machine::

    $HOME/sam2-ref/bin/python benchmarks/bench_image.py [--model sam2.1_hiera_tiny] [--repeat 3]

Without the official package it measures ours only. Results are printed as a table
and written to benchmarks/results/image_<model>.json.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from common import REPO, have_reference, load_fixture_script, machine, median, timeit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sam2.1_hiera_tiny")
    ap.add_argument("--repeat", type=int, default=3, help="encoder repetitions (each ~3 s)")
    ap.add_argument("--predict-repeat", type=int, default=30)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    torch.set_flush_denormal(True)
    if args.threads:
        torch.set_num_threads(args.threads)

    from napari_sam2.engine import ImagePredictor
    from napari_sam2.model import CONFIGS, SAM2

    cfg = CONFIGS[args.model]
    rng = np.random.default_rng(0)
    image = (rng.random((1024, 1024, 3)) * 255).astype(np.uint8)
    point = dict(point_coords=np.array([[512.0, 384.0]]), point_labels=np.array([1]))

    ref_predictor = None
    if have_reference():
        tools = load_fixture_script()
        ref_model = tools.make_model(cfg, seed=0)
        state = ref_model.state_dict()
        ref_predictor = tools.make_predictor(ref_model, tools.DEFAULT_SHIM)
    else:
        torch.manual_seed(0)
        state = SAM2(cfg).state_dict()
    ours_model = SAM2(cfg).eval().requires_grad_(False)
    ours_model.load_state_dict(state)
    ours = ImagePredictor(ours_model)

    rows = {}
    # encoder: alternate the two so drift in machine load hits both alike
    enc = {"ours": [], "official": []}
    for _ in range(args.repeat):
        enc["ours"] += timeit(lambda: ours.set_image(image), 1, warmup=0)
        if ref_predictor is not None:
            enc["official"] += timeit(lambda: ref_predictor.set_image(image), 1, warmup=0)
    rows["set_image (encoder) s/frame"] = {k: median(v) for k, v in enc.items() if v}

    for mm in (True, False):
        lat = {"ours": timeit(lambda: ours.predict(**point, multimask_output=mm), args.predict_repeat, warmup=3)}
        if ref_predictor is not None:
            lat["official"] = timeit(
                lambda: ref_predictor.predict(**point, multimask_output=mm), args.predict_repeat, warmup=3
            )
        rows[f"predict ms (1 click, multimask={mm})"] = {k: 1000 * median(v) for k, v in lat.items()}

    info = machine()
    print(f"# image benchmark: {args.model}, random weights, 1024x1024 uint8 RGB")
    print(f"# {info['cpu']}, {info['cores']} cores, torch {info['torch']} with {info['torch_threads']} threads")
    print(f"{'measure':40s} {'ours':>10s} {'official':>10s} {'ratio':>8s}")
    for name, r in rows.items():
        o, ref = r.get("ours"), r.get("official")
        ratio = f"{ref / o:7.2f}x" if ref else "    n/a"
        print(f"{name:40s} {o:10.3f} {ref if ref else float('nan'):10.3f} {ratio}")
    out = REPO / "benchmarks" / "results" / f"image_{args.model}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "model": args.model, "results": rows}, indent=2) + "\n")
    print(f"# written {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
