"""Model names: the official registry, the shipped models, and getting a name's file.

A name becomes a local file here: an official variant is downloaded once through
``huggingface_hub`` into its cache; a shipped model is a file in :data:`BUNDLED_DIR`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import CheckpointError, UnknownModelError, WeightsUnavailableError

#: Official variant name -> (Hugging Face repo id, file name), as the official ``build_sam.py``.
REGISTRY: dict[str, tuple[str, str]] = {
    "sam2.1_hiera_tiny": ("facebook/sam2.1-hiera-tiny", "sam2.1_hiera_tiny.pt"),
    "sam2.1_hiera_small": ("facebook/sam2.1-hiera-small", "sam2.1_hiera_small.pt"),
    "sam2.1_hiera_base_plus": ("facebook/sam2.1-hiera-base-plus", "sam2.1_hiera_base_plus.pt"),
    "sam2.1_hiera_large": ("facebook/sam2.1-hiera-large", "sam2.1_hiera_large.pt"),
    "sam2_hiera_tiny": ("facebook/sam2-hiera-tiny", "sam2_hiera_tiny.pt"),
    "sam2_hiera_small": ("facebook/sam2-hiera-small", "sam2_hiera_small.pt"),
    "sam2_hiera_base_plus": ("facebook/sam2-hiera-base-plus", "sam2_hiera_base_plus.pt"),
    "sam2_hiera_large": ("facebook/sam2-hiera-large", "sam2_hiera_large.pt"),
}

#: The official model ``load_model()`` loads when given no name, if its weights are cached.
DEFAULT_MODEL = "sam2.1_hiera_tiny"

#: The folder of the models shipped inside the package: the one line to change if they move.
BUNDLED_DIR = Path(__file__).parent.parent / "bundled"
#: Models shipped inside the package (name -> file in :data:`BUNDLED_DIR`): ours, trained
#: on synthetic fluorescence microscopy by ``python -m factory.train`` in the repository (docs/model.md).
BUNDLED: dict[str, str] = {"napari-sam2-cells": "napari-sam2-cells.pt"}
#: The bundled model used when no model is named and no official weights are cached.
BUNDLED_DEFAULT = "napari-sam2-cells"
_BUNDLED_ALIASES = {"cells": "napari-sam2-cells", "napari_sam2_cells": "napari-sam2-cells"}

_SIZE_ALIASES = {
    "t": "tiny",
    "tiny": "tiny",
    "s": "small",
    "small": "small",
    "b+": "base_plus",
    "base+": "base_plus",
    "bplus": "base_plus",
    "base_plus": "base_plus",
    "l": "large",
    "large": "large",
}
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")


def canonical_name(name: str) -> str | None:
    """Return the registry name for ``name`` or one of its aliases, else ``None``.

    Accepted spellings of, for example, ``sam2.1_hiera_base_plus``: ``sam2.1_hiera_b+``,
    ``sam2.1-hiera-base-plus``, ``facebook/sam2.1-hiera-base-plus``,
    ``sam2.1_hiera_base_plus.pt`` (case-insensitive).
    """
    text = name.strip().lower()
    text = text.removeprefix("facebook/").removesuffix(".pt").replace("-", "_")
    match = re.fullmatch(r"sam(2|2\.0|2\.1)_hiera_(.+)", text)
    if match is None or match.group(2) not in _SIZE_ALIASES:
        return None
    version = "sam2.1" if match.group(1) == "2.1" else "sam2"
    candidate = f"{version}_hiera_{_SIZE_ALIASES[match.group(2)]}"
    return candidate if candidate in REGISTRY else None


def bundled_path(name: str) -> Path | None:
    """The file of a bundled model (by name or alias), or None if ``name`` is not one."""
    key = name.strip().lower().removesuffix(".pt")
    key = _BUNDLED_ALIASES.get(key, key)
    if key not in BUNDLED:
        return None
    return BUNDLED_DIR / BUNDLED[key]


def official_cached(name: str) -> Path | None:
    """The cached file of an official model, without any network access (None if absent)."""
    canonical = canonical_name(name)
    if canonical is None:
        return None
    try:
        import huggingface_hub
    except ImportError:
        return None
    repo_id, filename = REGISTRY[canonical]
    with _quiet_hub():
        try:
            return Path(huggingface_hub.hf_hub_download(repo_id=repo_id, filename=filename, local_files_only=True))
        except Exception:
            return None


def default_model() -> str:
    """The model used when none is named: the official :data:`DEFAULT_MODEL` when its
    weights are cached, else the bundled model (else the official one, to download)."""
    if official_cached(DEFAULT_MODEL) is not None:
        return DEFAULT_MODEL
    bundled = bundled_path(BUNDLED_DEFAULT)
    if bundled is not None and bundled.is_file():
        return BUNDLED_DEFAULT
    return DEFAULT_MODEL


def _looks_like_path(value: str | os.PathLike[str]) -> bool:
    if not isinstance(value, str):
        return True
    return "/" in value or os.sep in value or value.lower().endswith(_CHECKPOINT_SUFFIXES)


def resolve_checkpoint(name_or_path: str | os.PathLike[str]) -> Path:
    """Return a local checkpoint file for a path or a model name.

    An existing file is returned as it is. A bundled model's name gives its file in
    :data:`BUNDLED_DIR`. A registry name (or alias, see :func:`canonical_name`) is
    downloaded through ``huggingface_hub`` into its cache on first use; later calls reuse
    the cached file.

    Parameters
    ----------
    name_or_path
        A checkpoint file, a bundled model's name or alias (``"napari-sam2-cells"``,
        ``"cells"``), or an official model's name or alias (``"sam2.1_hiera_tiny"``).

    Returns
    -------
    Path
        The checkpoint file: ``name_or_path`` itself, the bundled file, or the cached
        official file.

    Raises
    ------
    CheckpointError
        A path that does not exist or is a directory.
    WeightsUnavailableError
        A known name whose file could not be downloaded (offline, hub unreachable), or a
        bundled model missing from the installation.
    UnknownModelError
        A name that is neither a file nor a known model.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} is a directory, not a checkpoint file")
    bundled = bundled_path(name_or_path) if isinstance(name_or_path, str) else None
    if bundled is not None:
        if not bundled.is_file():
            raise WeightsUnavailableError(
                f"the bundled model {str(name_or_path)!r} is missing from this installation ({bundled}); "
                "reinstall napari-sam2, or train it from the repository: python -m factory.train --out DIR"
            )
        return bundled
    name = canonical_name(name_or_path) if isinstance(name_or_path, str) else None
    if name is not None:
        return _download(name)
    if _looks_like_path(name_or_path):
        raise CheckpointError(f"checkpoint file {str(path)!r} does not exist")
    raise UnknownModelError(
        f"unknown model {str(name_or_path)!r}: not a file and not a known SAM 2 model; "
        f"known names: {', '.join([*BUNDLED, *REGISTRY])}"
    )


def _download(name: str) -> Path:
    """The cached official file of ``name``, downloading it first if needed."""
    repo_id, filename = REGISTRY[name]
    hint = (
        f"download {filename} from https://huggingface.co/{repo_id} and pass the file, "
        f"e.g. load_model('/path/to/{filename}')"
    )
    try:
        import huggingface_hub
    except ImportError:
        raise WeightsUnavailableError(
            f"cannot download the official {name} weights: huggingface_hub is not installed; {hint}"
        ) from None
    cached = official_cached(name)  # already in the cache: no network at all
    if cached is not None:
        return cached
    with _quiet_hub():
        try:
            # hf_hub_download retries a missing network for ~25 s: ask once, without retries, first
            url = huggingface_hub.hf_hub_url(repo_id, filename)
            huggingface_hub.get_hf_file_metadata(url, timeout=10)
            return Path(huggingface_hub.hf_hub_download(repo_id=repo_id, filename=filename))
        except Exception as exc:  # offline, DNS, HTTP, hub errors: all mean "no weights here"
            raise WeightsUnavailableError(
                f"could not download the official {name} weights ({type(exc).__name__}; offline?); {hint}"
            ) from None


@contextmanager
def _quiet_hub() -> Iterator[None]:
    """Silence huggingface_hub's retry warnings: a failure becomes our one-line error."""
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_logger.setLevel(level)
