"""``napari-sam2 segment-image``: one object in one 2-D image, from points and/or a box, written
as a mask TIFF. The output may replace only a mask that segment-image wrote earlier.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ..errors import SAM2Error, WeightsUnavailableError
from ._common import DEFAULT_HELP, EXIT_ERROR, _error, _model_name, _weights_hint

MASK_SOFTWARE = "napari-sam2"  # the TIFF Software tag of the masks segment-image writes


def _add_segment_image(commands: Any) -> None:
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
        "--model", help=f"model name; official ones are downloaded on first use (default: {DEFAULT_HELP})",
    )
    weights.add_argument("--checkpoint", type=Path, help="a local official checkpoint (.pt) instead")
    seg.add_argument(
        "--config", type=Path,
        help="JSON config (SAM2Config.to_json()) for a checkpoint that is not an official variant",
    )
    seg.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default: cpu)")
    seg.add_argument("-o", "--output", type=Path, required=True, help="output mask TIFF")
    seg.add_argument("--overwrite", action="store_true",
                     help="replace an existing OUTPUT if it is a mask that segment-image wrote (never anything else)")  # fmt: skip


def _read_image(path: Path):  # -> np.ndarray
    import numpy as np

    from ..errors import InputError, one_line

    if not path.is_file():
        raise SAM2Error(f"image file {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise InputError(f"image file {str(path)!r} is empty (0 bytes)")
    if path.suffix.lower() in (".tif", ".tiff"):
        from ..io.stacks import read_tiff

        return read_tiff(path)  # a damaged TIFF raises instead of giving its first page
    try:
        import skimage.io

        image = skimage.io.imread(path)
    except Exception as exc:  # imageio's errors run to several lines of plugin advice: one line instead
        if "could not find a backend" in str(exc).lower() or type(exc).__name__ == "UnidentifiedImageError":
            why = "it is not an image file that can be read (no reader recognises its contents)"
        else:
            why = f"the file is damaged ({one_line(exc)})"
        raise InputError(f"could not read image {str(path)!r}: {why}") from None
    return np.asarray(image)


def _segment_image(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import load_model

    if not args.point and not args.negative and args.box is None:
        _error("give at least one --point, --negative or --box")
        return EXIT_ERROR
    _check_mask_output(args)  # before any work: never the input, only our own earlier mask
    image = _read_image(args.image)
    try:
        model = load_model(args.checkpoint or _model_name(args), args.device, config=args.config)
    except WeightsUnavailableError:
        _error(_weights_hint(_model_name(args)))
        return EXIT_ERROR

    from .. import ImagePredictor

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
    description = json.dumps({"napari_sam2": {"model": model.config.name, "image": str(args.image)}})
    _write_mask(args.output, mask.astype(np.uint8) * 255, description, overwrite=args.overwrite)
    print(f"{args.output}: {int(mask.sum())} pixels, predicted IoU {float(scores[best]):.3f}, model {model.config.name}")
    return 0


def _is_our_mask(path: Path) -> bool:
    """A TIFF that segment-image wrote (its Software tag says so)."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return tif.pages.first.software == MASK_SOFTWARE
    except Exception:  # noqa: BLE001 - unreadable: not ours
        return False


def _check_mask_output(args: argparse.Namespace) -> None:
    from ..io.labels import check_output_spares, check_replaceable

    inputs = [args.image, args.checkpoint, args.config]
    check_output_spares(args.output, [p for p in inputs if p is not None and p.exists()])
    check_replaceable(args.output, args.overwrite, ours=_is_our_mask, what="a mask that segment-image wrote")


def _write_mask(path: Path, mask: Any, description: str, *, overwrite: bool) -> None:
    """Write the mask TIFF to a temporary file beside ``path``, then rename it into place."""
    import tifffile

    from ..errors import OutputExistsError
    from ..io._files import temporary_beside

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_beside(path, ".partial.tif")
    try:
        tifffile.imwrite(tmp, mask, software=MASK_SOFTWARE, description=description, metadata=None)
        if overwrite and _is_our_mask(path):
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if something appeared there meanwhile, rather than replacing it
            except FileExistsError:
                raise
            except OSError:  # a file system without hard links
                if os.path.lexists(path):
                    raise FileExistsError(path) from None
                os.replace(tmp, path)
    except FileExistsError:
        raise OutputExistsError(f"{path} already exists; choose another output") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
