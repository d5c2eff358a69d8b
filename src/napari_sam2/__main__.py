"""``python -m napari_sam2``: segment an image from the command line.

Example::

    python -m napari_sam2 segment-image examples/coins.png --point 155 50 -o mask.tif

Coordinates are ``x y`` in pixels of the image (x = column, y = row). The best mask is
written as a uint8 TIFF (object 255, background 0) and its predicted IoU is printed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import SAM2Error, WeightsUnavailableError

EXIT_ERROR = 1
EXIT_USAGE = 2  # argparse's code for bad arguments; also "no weights available"


def build_parser() -> argparse.ArgumentParser:
    from .weights import DEFAULT_MODEL

    parser = argparse.ArgumentParser(
        prog="python -m napari_sam2", description="SAM 2 segmentation without napari."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    seg = commands.add_parser(
        "segment-image",
        help="segment one object in a 2-D image from points and/or a box",
        description="Segment one object in a 2-D image (grayscale or RGB; uint8, uint16 or float) "
        "from positive/negative points and/or a box, given as x y pixel coordinates.",
    )
    seg.add_argument("image", type=Path, help="image file (TIFF, PNG, JPEG, ...)")
    seg.add_argument(
        "--point", nargs=2, type=float, action="append", default=[], metavar=("X", "Y"),
        help="a point on the object (repeatable)",
    )
    seg.add_argument(
        "--negative", nargs=2, type=float, action="append", default=[], metavar=("X", "Y"),
        help="a point on the background (repeatable)",
    )
    seg.add_argument(
        "--box", nargs=4, type=float, metavar=("X0", "Y0", "X1", "Y1"), help="a box around the object"
    )
    weights = seg.add_mutually_exclusive_group()
    weights.add_argument(
        "--model", default=DEFAULT_MODEL,
        help=f"official model name, downloaded on first use (default: {DEFAULT_MODEL})",
    )
    weights.add_argument("--checkpoint", type=Path, help="a local official checkpoint (.pt) instead")
    seg.add_argument(
        "--config", type=Path,
        help="JSON config (SAM2Config.to_json()) for a checkpoint that is not an official variant",
    )
    seg.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default: cpu)")
    seg.add_argument("-o", "--output", type=Path, required=True, help="output mask TIFF")
    return parser


def _read_image(path: Path):  # -> np.ndarray
    import numpy as np

    if not path.is_file():
        raise SAM2Error(f"image file {str(path)!r} does not exist")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            image = tifffile.imread(path)
        else:
            import skimage.io

            image = skimage.io.imread(path)
    except Exception as exc:
        raise SAM2Error(f"could not read image {str(path)!r} ({type(exc).__name__}: {exc})") from None
    return np.asarray(image)


def _segment_image(args: argparse.Namespace) -> int:
    import numpy as np
    import tifffile

    from . import load_model
    from .weights import REGISTRY, canonical_name

    if not args.point and not args.negative and args.box is None:
        print("error: give at least one --point, --negative or --box", file=sys.stderr)
        return EXIT_USAGE
    image = _read_image(args.image)
    try:
        model = load_model(args.checkpoint or args.model, args.device, config=args.config)
    except WeightsUnavailableError:
        name = canonical_name(args.model) or args.model
        repo_id, filename = REGISTRY.get(name, ("facebook/" + name, name + ".pt"))
        print(
            f"error: the official {name} weights could not be downloaded (offline?); get {filename} "
            f"from https://huggingface.co/{repo_id} and pass it with --checkpoint FILE",
            file=sys.stderr,
        )
        return EXIT_USAGE

    from . import ImagePredictor

    predictor = ImagePredictor(model)
    predictor.set_image(image)
    points = args.point + args.negative
    coords = np.asarray(points, dtype=np.float32).reshape(-1, 2) if points else None
    labels = np.asarray([1] * len(args.point) + [0] * len(args.negative)) if points else None
    box = np.asarray(args.box, dtype=np.float32) if args.box is not None else None
    # One point is ambiguous (part / object / group): let SAM propose three and keep the best.
    multimask = len(points) == 1 and box is None
    masks, scores, _ = predictor.predict(
        point_coords=coords, point_labels=labels, box=box, multimask_output=multimask
    )
    best = int(np.argmax(scores))
    mask = np.asarray(masks[best], dtype=bool)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(args.output, mask.astype(np.uint8) * 255)
    print(f"{args.output}: {int(mask.sum())} pixels, predicted IoU {float(scores[best]):.3f}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "segment-image":
            return _segment_image(args)
    except SAM2Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
