"""Reading checkpoint files safely: a state dict of tensors, and the config ours carry.

``torch.load`` runs with ``weights_only=True``, so only tensors and plain containers are
ever unpickled; a file that needs any other Python object is refused, and the refusal names
that object (read with ``pickletools``, which unpickles nothing). ``.safetensors`` files are
read through the ``safetensors`` package.
"""

from __future__ import annotations

import os
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, one_line
from ..model.config import SAM2Config

# A tensor every SAM 2 checkpoint has; its absence means "not SAM 2".
_PATCH_EMBED = "image_encoder.trunk.patch_embed.proj.weight"
_SAM1_PATCH_EMBED = "image_encoder.patch_embed.proj.weight"

#: lines of torch's weights-only error that advise loading unsafely; never shown
_UNSAFE_ADVICE = re.compile(r"weights_only|Weights only load failed|trusted source|Check the documentation")
_STRING_OPCODES = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}


def _pickled_globals(path: Path, is_zip: bool) -> list[str]:
    """The classes and functions ``path``'s pickle imports, read with ``pickletools`` (which
    never unpickles anything); the ones every torch checkpoint has are left out."""
    import io
    import pickletools

    found: list[str] = []
    try:
        if is_zip:
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.endswith("data.pkl")]
                data = archive.read(names[0]) if names else b""
        else:
            with open(path, "rb") as f:
                data = f.read(64 << 20)  # a legacy file: a few pickles, then raw storages
        stream = io.BytesIO(data)
        for _ in range(8):
            strings: list[str] = []
            for op, arg, _pos in pickletools.genops(stream):
                if op.name in _STRING_OPCODES:
                    strings.append(str(arg))
                elif op.name == "GLOBAL":
                    found.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # the end of the pickles, or a damaged one: keep what was read
        pass
    plain = ("torch.", "collections.OrderedDict", "builtins.set", "builtins.frozenset", "_codecs.encode")
    return [name for name in found if not name.startswith(plain)]


def _refusal(exc: BaseException, path: Path, is_zip: bool) -> str | None:
    """Why torch's weights-only unpickler refused ``path`` -- the Python object it needs --
    or None when the error is no such refusal (or the file is just damaged)."""
    text = str(exc)
    if "Weights only load failed" not in text and "WeightsUnpickler" not in text:
        return None
    name = re.search(r"GLOBAL ([\w.]+)", text)
    if name is not None:
        return f"the Python object {name.group(1)}"
    cls = re.search(r"but got (<class '[^']+'>|[\w.]+)", text)
    if cls is not None:
        return f"an object of {cls.group(1)}"
    imported = _pickled_globals(path, is_zip)
    if imported:
        return f"the Python object {imported[0]}"
    return None


def _torch_error_line(exc: BaseException) -> str:
    """The first line of a torch error that is not torch's advice to load unsafely."""
    lines = [line.strip() for line in str(exc).splitlines()]
    kept = [line for line in lines if line and not _UNSAFE_ADVICE.search(line)]
    if not kept:
        return type(exc).__name__
    line = kept[0] if len(kept[0]) <= 160 else kept[0][:157] + "..."
    return f"{type(exc).__name__}: {line}"


def _torch_load(path: Path) -> Any:
    """``torch.load`` that unpickles only tensors and plain containers: a file that needs any
    other Python object is refused for safety (a pickle can run any code as it loads)."""
    is_zip = zipfile.is_zipfile(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pickle-protocol chatter from odd files
            return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except Exception as exc:
        needed = _refusal(exc, path, is_zip)
        if needed is not None:
            raise CheckpointError(
                f"checkpoint {str(path)!r} is refused for safety: it is not a plain-tensor checkpoint, it needs "
                f"arbitrary Python objects to load ({needed}), and unpickling those can run any code; "
                "napari-sam2 loads only tensors and plain containers, such as an official checkpoint "
                "or a state dict saved with torch.save"
            ) from None
        what = "corrupt" if is_zip else "truncated or corrupt, or not a PyTorch checkpoint"
        if "Unsupported operand" in str(exc):  # also a plain file saved with pickle_protocol=4 or 5
            what += ", or pickled with a protocol above 3, which safe loading does not read"
        raise CheckpointError(
            f"checkpoint {str(path)!r} could not be read: the file is {what} ({_torch_error_line(exc)})"
        ) from None


def _read_safetensors(path: Path) -> Any:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is a .safetensors file but the safetensors package is not "
            "installed (pip install safetensors)"
        ) from None
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r} could not be read: the file is truncated or corrupt "
            f"({one_line(exc)})"
        ) from None


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a SAM 2 state dict from an official ``.pt`` file (or a ``.safetensors`` file).

    Accepts the official format ``{"model": state_dict}`` and a bare state dict. Only
    tensors are unpickled (``weights_only=True``). The first half of
    :func:`read_checkpoint`'s answer (see there for the config some checkpoints carry and
    for the errors).
    """
    return read_checkpoint(path)[0]


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], SAM2Config | None]:
    """Read a SAM 2 checkpoint: its state dict and, if it carries one, its config.

    Our own checkpoints (the bundled model, fine-tuned ones: ``napari_sam2.finetune``) are
    ``{"model": state_dict, "config": SAM2Config JSON, ...}``; official ones have no config.

    Parameters
    ----------
    path
        A ``.pt`` file (official ``{"model": state_dict}``, ours, or a bare state dict),
        or a ``.safetensors`` file.

    Returns
    -------
    state_dict : dict[str, torch.Tensor]
        The tensors, on the CPU, as stored (``.pt`` zip files are memory-mapped).
    config : SAM2Config or None
        The config the checkpoint carries; None for official checkpoints.

    Raises
    ------
    CheckpointError
        The file is missing, truncated or corrupt, needs arbitrary unpickling, is not a
        dict of tensors, or is not a SAM 2 state dict.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"checkpoint file {str(path)!r} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} is a directory, not a checkpoint file")
    if path.suffix.lower() == ".safetensors":
        obj = _read_safetensors(path)
    else:
        obj = _torch_load(path)
    config = None
    if isinstance(obj, Mapping) and isinstance(obj.get("config"), str):
        try:
            config = SAM2Config.from_json(obj["config"])
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"checkpoint {str(path)!r} carries an invalid config ({one_line(exc)})") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]  # the official format
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds a {type(obj).__name__}, not a state dict of tensors"
        )
    if not obj:
        raise CheckpointError(f"checkpoint {str(path)!r} holds an empty dict, no tensors")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"checkpoint {str(path)!r} is not a state dict of tensors: entry {key!r} is a "
                f"{type(value).__name__}"
            )
    if _PATCH_EMBED not in obj:
        if _SAM1_PATCH_EMBED in obj:
            raise CheckpointError(
                f"checkpoint {str(path)!r} looks like a SAM 1 (segment-anything) checkpoint, not SAM 2"
            )
        first = ", ".join(list(obj)[:3])
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a SAM 2 checkpoint: it has no {_PATCH_EMBED} "
            f"(its first keys: {first})"
        )
    return dict(obj), config
