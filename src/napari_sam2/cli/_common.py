"""What the commands of the command line share: the program name, the exit codes, the one
error line, the argument types, and which model a command means.

The exit codes are the command line's contract (``docs/cli.md``); :mod:`napari_sam2.cli`
re-exports them.
"""

from __future__ import annotations

import argparse
import sys

PROG = "napari-sam2"
EXIT_FAILED_STACKS = 1
EXIT_ERROR = 2  # also argparse's code for bad arguments
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a terminated command
# segment-image keeps the codes it shipped with (README): 1 an error, 2 bad arguments / no weights
EXIT_IMAGE_ERROR = 1
# weights.DEFAULT_MODEL, spelled out so that --help and bad files need no torch import (a test checks it)
DEFAULT_MODEL_HELP = "sam2.1_hiera_tiny"
DEFAULT_HELP = f"{DEFAULT_MODEL_HELP} if its weights are cached, else the bundled napari-sam2-cells"


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _model_name(args: argparse.Namespace) -> str:
    from ..weights import default_model

    return getattr(args, "model", None) or default_model()


def _weights_hint(model: str) -> str:
    from ..weights import REGISTRY, bundled_path, canonical_name

    if bundled_path(model) is not None:
        return f"the bundled model {model} is missing from this installation; reinstall napari-sam2"
    name = canonical_name(model) or model
    repo_id, filename = REGISTRY.get(name, ("facebook/" + name, name + ".pt"))
    return (
        f"the official {name} weights could not be downloaded (offline?); get {filename} "
        f"from https://huggingface.co/{repo_id} and pass it with --checkpoint FILE"
    )
