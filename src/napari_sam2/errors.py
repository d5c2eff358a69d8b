"""The package's exceptions.

Every error this package raises on purpose derives from :class:`SAM2Error`, so a caller
(the CLI, a napari widget) can catch them all and show the one-line message instead of
a traceback.
"""

from __future__ import annotations


class SAM2Error(Exception):
    """Base class of every error napari-sam2 raises on purpose."""


class CheckpointError(SAM2Error):
    """A checkpoint file is missing, unreadable, unsafe, or does not fit the model."""


class WeightsUnavailableError(SAM2Error):
    """Official weights were asked for by name but could not be downloaded."""


class UnknownModelError(SAM2Error, ValueError):
    """A model name that is neither a file nor a known official variant."""


class InputError(SAM2Error, ValueError):
    """An image or prompt that the model cannot take (wrong rank, NaN, outside the image, ...)."""


class OutputExistsError(SAM2Error, FileExistsError):
    """The output already exists and overwriting it was not asked for."""


def one_line(exc: BaseException, limit: int = 160) -> str:
    """``exc`` as ``"TypeName: first line of its message"``, cut to ``limit`` characters.

    The one way the package quotes a foreign error (torch, tifffile, zarr, the network) inside
    its own one-line messages.
    """
    text = str(exc).strip().splitlines()
    line = text[0].strip() if text else ""
    line = line if len(line) <= limit else line[: limit - 3] + "..."
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__
