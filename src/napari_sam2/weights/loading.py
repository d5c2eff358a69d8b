"""Loading a model: build the network for a checkpoint and put its tensors in, unchanged.

:func:`load_model` joins the other modules: a name or path becomes a file
(:mod:`.names`), the file a state dict (:mod:`.reading`), the state dict a config
(:mod:`.variants`, unless the checkpoint carries its own or one is passed), and
:func:`check_state_dict` says in one line every way the tensors do not fit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import CheckpointError, InputError, one_line
from ..model.config import SAM2Config
from ..runtime import pick_device, pick_dtype
from .names import default_model, resolve_checkpoint
from .reading import read_checkpoint
from .variants import infer_config

if TYPE_CHECKING:
    from ..model.sam2 import SAM2


def _coerce_config(config: SAM2Config | Mapping[str, Any] | str | os.PathLike[str]) -> SAM2Config:
    if isinstance(config, SAM2Config):
        return config
    if isinstance(config, Mapping):
        return SAM2Config.from_dict(dict(config))
    if isinstance(config, (str, os.PathLike)):
        path = Path(config).expanduser()
        if not path.is_file():
            raise InputError(f"config file {str(path)!r} does not exist")
        try:
            return SAM2Config.from_json(path.read_text())
        except (ValueError, TypeError) as exc:
            raise InputError(f"config file {str(path)!r} is not a valid SAM2Config JSON ({exc})") from None
    raise TypeError(f"config must be a SAM2Config, a dict or a JSON file path, not {type(config).__name__}")


def _listed(items: list[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def check_state_dict(
    model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str | os.PathLike[str]
) -> None:
    """Raise one ``CheckpointError`` listing missing, unexpected and mis-shaped tensors.

    Parameters
    ----------
    model
        The network the tensors are meant for.
    state_dict
        The tensors, e.g. from :func:`read_checkpoint`.
    source
        Names the checkpoint in the message.

    Raises
    ------
    CheckpointError
        ``state_dict`` does not fit ``model``: up to three of each kind of problem are named.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k} {tuple(state_dict[k].shape)} != model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s): {_listed(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s): {_listed(unexpected)}")
    if wrong:
        problems.append(f"{len(wrong)} wrong shape(s): {_listed(wrong)}")
    if problems:
        name = getattr(getattr(model, "config", None), "name", type(model).__name__)
        raise CheckpointError(
            f"checkpoint {str(source)!r} does not fit model {name!r}: {'; '.join(problems)}"
        )


def load_model(
    name_or_path: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    *,
    config: SAM2Config | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    dtype: torch.dtype | str | None = None,
) -> SAM2:
    """Build a SAM 2 network and load official weights into it, unchanged.

    Parameters
    ----------
    name_or_path
        A checkpoint file (official ``{"model": state_dict}`` ``.pt``, a bare state dict,
        or ``.safetensors``), or an official model name such as ``"sam2.1_hiera_tiny"``
        (downloaded and cached through huggingface_hub), or a bundled model's name
        (``"napari-sam2-cells"``). ``None`` loads :func:`default_model`: the official
        :data:`DEFAULT_MODEL` if its weights are cached, else the bundled model.
    device
        Where the model lives: ``"cpu"``, ``"cuda"``, ``"mps"``, a ``torch.device``, or
        ``"auto"`` (cuda, then mps, then cpu).
    config
        The network's config, for checkpoints that are not an official variant: a
        ``SAM2Config``, a dict, or a JSON file written from ``SAM2Config.to_json()``.
        By default it is inferred from the checkpoint's tensors.
    dtype
        Cast parameters and buffers to this dtype (e.g. ``torch.bfloat16``); default keeps
        float32.

    Returns
    -------
    SAM2
        In eval mode, with ``requires_grad`` off.

    Raises
    ------
    CheckpointError, WeightsUnavailableError, UnknownModelError
        One-line messages naming the file and the problem.
    """
    from ..model.sam2 import SAM2

    path = resolve_checkpoint(default_model() if name_or_path is None else name_or_path)
    state_dict, own_config = read_checkpoint(path)
    if config is not None:
        cfg = _coerce_config(config)
    else:
        cfg = own_config or infer_config(state_dict, source=path)
    target_dtype = pick_dtype(dtype)
    model = SAM2(cfg)
    check_state_dict(model, state_dict, source=path)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:  # check_state_dict should have caught it; keep it one line
        raise CheckpointError(f"checkpoint {str(path)!r} does not fit the model ({one_line(exc)})") from None
    del state_dict
    model.eval()
    model.requires_grad_(False)
    return model.to(device=pick_device(device), dtype=target_dtype)
