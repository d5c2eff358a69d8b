"""Official SAM 2 weights: registry, download, safe reading, variant inference, loading.

``load_model`` is the one entry point most code needs::

    model = load_model("sam2.1_hiera_tiny")            # official weights, downloaded once
    model = load_model("/data/sam2.1_hiera_tiny.pt")   # a local official checkpoint

Checkpoints are read with ``torch.load(..., weights_only=True)``: only tensors and plain
containers are ever unpickled. The variant is inferred from the checkpoint's own tensors,
so a file does not need a matching name. Every failure is a one-line
:class:`~napari_sam2.errors.SAM2Error` that names the file and the problem.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import CheckpointError, InputError, UnknownModelError, WeightsUnavailableError, one_line
from ..model.config import CONFIGS, SAM2Config
from ..runtime import pick_device, pick_dtype

if TYPE_CHECKING:
    from ..model.sam2 import SAM2

__all__ = [
    "BUNDLED",
    "DEFAULT_MODEL",
    "REGISTRY",
    "bundled_path",
    "canonical_name",
    "default_model",
    "official_cached",
    "read_checkpoint",
    "check_state_dict",
    "infer_config",
    "load_model",
    "read_state_dict",
    "resolve_checkpoint",
]

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

#: Models shipped inside the package (name -> file in ``napari_sam2/data``): ours, trained
#: on synthetic fluorescence microscopy by ``python -m napari_sam2.train`` (docs/model.md).
BUNDLED: dict[str, str] = {"napari-sam2-cells": "napari-sam2-cells.pt"}
#: The bundled model used when no model is named and no official weights are cached.
BUNDLED_DEFAULT = "napari-sam2-cells"
_BUNDLED_ALIASES = {"cells": "napari-sam2-cells", "napari_sam2_cells": "napari-sam2-cells"}

# A tensor every SAM 2 checkpoint has; its absence means "not SAM 2".
_PATCH_EMBED = "image_encoder.trunk.patch_embed.proj.weight"
_SAM1_PATCH_EMBED = "image_encoder.patch_embed.proj.weight"
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


# --------------------------------------------------------------------------- names


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
    return Path(__file__).parent.parent / "data" / BUNDLED[key]


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
    """Return a local checkpoint file for a path or an official model name.

    An existing file is returned as it is. A registry name (or alias, see
    :func:`canonical_name`) is downloaded through ``huggingface_hub`` into its cache on
    first use; later calls reuse the cached file.

    Raises
    ------
    CheckpointError
        A path that does not exist or is a directory.
    WeightsUnavailableError
        A known name whose file could not be downloaded (offline, hub unreachable).
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
                "reinstall napari-sam2 or train it: python -m napari_sam2.train --out DIR"
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


# --------------------------------------------------------------------------- reading


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
    tensors are unpickled (``weights_only=True``).
    See :func:`read_checkpoint` for the config some checkpoints carry.
    """
    return read_checkpoint(path)[0]


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], SAM2Config | None]:
    """Read a SAM 2 checkpoint: its state dict and, if it carries one, its config.

    Our own checkpoints (the bundled model, fine-tuned ones: ``napari_sam2.train``) are
    ``{"model": state_dict, "config": SAM2Config JSON, ...}``; official ones have no config.

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


# --------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class _Signature:
    """What the tensors of a checkpoint say about its variant."""

    embed_dim: int
    stages: tuple[int, ...]
    pos_embed_size: tuple[int, ...]
    first_window: int | None
    sam21: bool
    d_model: int | None
    mem_dim: int | None
    memory_attention_layers: int | None

    def describe(self) -> str:
        version = "2.1" if self.sam21 else "2.0"
        return (
            f"SAM {version}, Hiera embed_dim {self.embed_dim}, stages {self.stages}, "
            f"pos_embed {self.pos_embed_size}"
        )


def _config_signature(cfg: SAM2Config) -> _Signature:
    trunk = cfg.trunk
    return _Signature(
        embed_dim=trunk.embed_dim,
        stages=tuple(trunk.stages),
        pos_embed_size=tuple(trunk.window_pos_embed_bkg_spatial_size),
        first_window=trunk.window_spec[0],
        sam21=cfg.no_obj_embed_spatial or cfg.proj_tpos_enc_in_obj_ptrs,
        d_model=cfg.d_model,
        mem_dim=cfg.mem_dim,
        memory_attention_layers=cfg.memory_attention_layers,
    )


def _state_dict_signature(sd: Mapping[str, torch.Tensor]) -> _Signature:
    block_ids = set()
    stage_starts = {0}
    layer_ids = set()
    for key in sd:
        block = re.match(r"image_encoder\.trunk\.blocks\.(\d+)\.", key)
        if block is not None:
            block_ids.add(int(block.group(1)))
            if key.endswith(".proj.weight") and ".attn." not in key:
                stage_starts.add(int(block.group(1)))  # a block with a projection opens a stage
        layer = re.match(r"memory_attention\.layers\.(\d+)\.", key)
        if layer is not None:
            layer_ids.add(int(layer.group(1)))
    num_blocks = max(block_ids) + 1 if block_ids else 0
    bounds = sorted(stage_starts) + [num_blocks]
    stages = tuple(b - a for a, b in zip(bounds[:-1], bounds[1:]))

    def dim(key: str, axis: int) -> int | None:
        tensor = sd.get(key)
        return int(tensor.shape[axis]) if tensor is not None and tensor.dim() > axis else None

    pos_embed = sd.get("image_encoder.trunk.pos_embed")
    return _Signature(
        embed_dim=int(sd[_PATCH_EMBED].shape[0]),
        stages=stages,
        pos_embed_size=tuple(pos_embed.shape[2:]) if pos_embed is not None else (),
        first_window=dim("image_encoder.trunk.pos_embed_window", 2),
        sam21="no_obj_embed_spatial" in sd or "obj_ptr_tpos_proj.weight" in sd,
        d_model=dim("no_mem_embed", -1),
        mem_dim=dim("maskmem_tpos_enc", -1),
        memory_attention_layers=len(layer_ids) or None,
    )


def _matches(found: _Signature, official: _Signature) -> bool:
    """True when every fact the checkpoint shows equals the official one (None = unknown)."""
    for name in found.__dataclass_fields__:
        value = getattr(found, name)
        if value is not None and value != getattr(official, name):
            return False
    return True


def infer_config(
    state_dict: Mapping[str, torch.Tensor], *, source: str | os.PathLike[str] | None = None
) -> SAM2Config:
    """Return the official config (an entry of ``CONFIGS``) whose tensors ``state_dict`` has.

    The trunk width comes from the patch embedding, the blocks per stage from where the
    blocks with a projection sit, 2.0 vs 2.1 from ``no_obj_embed_spatial`` /
    ``obj_ptr_tpos_proj``. ``source`` only names the file in error messages.

    Raises
    ------
    CheckpointError
        The tensors are not SAM 2, or match no official variant (pass ``config=`` then).
    """
    where = f"checkpoint {str(source)!r}" if source is not None else "state dict"
    if _PATCH_EMBED not in state_dict:
        raise CheckpointError(f"{where} is not a SAM 2 checkpoint: it has no {_PATCH_EMBED}")
    found = _state_dict_signature(state_dict)
    for cfg in CONFIGS.values():
        if _matches(found, _config_signature(cfg)):
            return cfg
    raise CheckpointError(
        f"{where} matches no official SAM 2 variant ({found.describe()}); "
        "pass its config explicitly: load_model(path, config=SAM2Config(...) or 'config.json')"
    )


# --------------------------------------------------------------------------- loading


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
    """Raise one ``CheckpointError`` listing missing, unexpected and mis-shaped tensors."""
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

