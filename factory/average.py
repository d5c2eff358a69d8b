"""Average the weights of models trained from a common start (a "model soup").

Two runs fine-tuned from the same model sit close enough in weight space that their mean
is a model too, and often keeps what each of them learned. napari-sam2-cells is such a
mean: run 6 tracked z-stacks better than run 5 and time-lapses worse, run 7 the other way
round, and their average beat run 5 in both (docs/model.md).

    python -m factory.average runs/cells-p6/model.pt runs/cells-p7/model.pt -o soup.pt   # from the repository root
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from napari_sam2.errors import InputError
from napari_sam2.finetune.loop import export_model
from napari_sam2.model.sam2 import SAM2

__all__ = ["average_models", "main"]


def average_models(models: Sequence[SAM2]) -> SAM2:
    """A new SAM2 whose floating-point weights are the mean of ``models``' (same config).

    A presence calibration (``SAM2Config.presence_bias_t`` / ``_z``) belongs to the weights
    it was chosen for, so the mean has none: calibrate it again.
    """
    if len(models) < 2:
        raise InputError("give at least two models to average")
    first = models[0]
    for other in models[1:]:
        if other.config.architecture() != first.config.architecture():
            raise InputError("the models have different configs: only models of one architecture can be averaged")
    states = [m.state_dict() for m in models]
    mean = {}
    for key, value in states[0].items():
        if value.is_floating_point():
            mean[key] = sum(s[key].float() for s in states) / len(states)
        else:
            if any(not torch.equal(s[key], value) for s in states[1:]):
                raise InputError(f"the models differ in the non-float tensor {key!r}: they cannot be averaged")
            mean[key] = value
    out = SAM2(first.config.architecture())
    out.load_state_dict(mean)
    return out.eval()


def main(argv: Sequence[str] | None = None) -> int:
    from napari_sam2.weights import load_model

    p = argparse.ArgumentParser(prog="python -m factory.average", description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="+", help="model files (or bundled names) of one architecture")
    p.add_argument("-o", "--output", required=True, help="the averaged model file (fp16, loads with load_model)")
    args = p.parse_args(argv)
    try:
        models = [load_model(m) for m in args.models]
        soup = average_models(models)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = export_model(soup, Path(args.output), averaged_from=" ".join(os.fspath(m) for m in args.models))
    print(f"wrote {path}: the mean of {len(models)} models")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
