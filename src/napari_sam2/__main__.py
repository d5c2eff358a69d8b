"""``python -m napari_sam2``: the ``napari-sam2`` command line (see :mod:`napari_sam2.cli`).

Example, the README's first command::

    python -m napari_sam2 segment-image examples/coins.png --point 155 50 -o mask.tif
"""

from __future__ import annotations

import sys

from ._entry import main  # cli.main behind a Ctrl-C guard (see _entry)

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
