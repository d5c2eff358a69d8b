"""Official SAM 2 weights (interim: everything still lives in :mod:`.names`, split next)."""

from .names import *  # noqa: F403
from .names import __all__, _torch_load  # noqa: F401  # _torch_load: train/loop.py, until the split
