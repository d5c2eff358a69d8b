"""Official SAM 2 weights, and ours: names, download, safe reading, variant inference, loading.

``load_model`` is the one entry point most code needs::

    model = load_model("sam2.1_hiera_tiny")            # official weights, downloaded once
    model = load_model("/data/sam2.1_hiera_tiny.pt")   # a local official checkpoint

Checkpoints are read with ``torch.load(..., weights_only=True)``: only tensors and plain
containers are ever unpickled. The variant is inferred from the checkpoint's own tensors,
so a file does not need a matching name. Every failure is a one-line
:class:`~napari_sam2.errors.SAM2Error` that names the file and the problem.

The modules: :mod:`.names` (the registry, the shipped models, the hub download),
:mod:`.reading` (safe reading), :mod:`.variants` (which official variant a state dict
is), :mod:`.loading` (:func:`load_model`).
"""

from .loading import check_state_dict, load_model
from .names import (
    BUNDLED,
    BUNDLED_DEFAULT,
    BUNDLED_DIR,
    DEFAULT_MODEL,
    REGISTRY,
    bundled_path,
    canonical_name,
    default_model,
    official_cached,
    resolve_checkpoint,
)
from .reading import read_checkpoint, read_state_dict
from .variants import infer_config

__all__ = [
    "BUNDLED",
    "BUNDLED_DEFAULT",
    "BUNDLED_DIR",
    "DEFAULT_MODEL",
    "REGISTRY",
    "bundled_path",
    "canonical_name",
    "check_state_dict",
    "default_model",
    "infer_config",
    "load_model",
    "official_cached",
    "read_checkpoint",
    "read_state_dict",
    "resolve_checkpoint",
]
