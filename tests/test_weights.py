"""Loading official checkpoints: registry, download, safe reading, variant inference, errors.

No test touches the network: conftest replaces ``huggingface_hub.hf_hub_download``.
Checkpoints are built in ``tmp_path`` from a small seeded model.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

import napari_sam2
from napari_sam2.errors import CheckpointError, UnknownModelError, WeightsUnavailableError
from napari_sam2.model.config import CONFIGS, SAM2Config
from napari_sam2.model.sam2 import SAM2
from napari_sam2.weights import names as weights  # patched below: where default_model looks names up
from napari_sam2.finetune import export_model
from napari_sam2.weights import (
    REGISTRY,
    canonical_name,
    infer_config,
    load_model,
    read_checkpoint,
    read_state_dict,
    resolve_checkpoint,
)

from .parity import SMALL_CONFIG as SMALL


# Parameter counts of the official models, measured with the official package (sam2 1.1.0)
# in the side venv of shared/reference/README.md:
#   m = sam2.build_sam.build_sam2(f"configs/{version}/{stem}.yaml", ckpt_path=None, device="cpu")
#   sum(p.numel() for p in m.parameters())
OFFICIAL_PARAMETER_COUNTS = {
    "sam2.1_hiera_tiny": 38_962_498,
    "sam2.1_hiera_small": 46_060_354,
    "sam2.1_hiera_base_plus": 80_850_178,
    "sam2.1_hiera_large": 224_446_642,
    "sam2_hiera_tiny": 38_945_986,
    "sam2_hiera_small": 46_043_842,
    "sam2_hiera_base_plus": 80_833_666,
    "sam2_hiera_large": 224_430_130,
}


class NotATensor:
    """A custom class: pickling it makes a checkpoint that weights_only refuses."""


def meta_model(config: SAM2Config) -> SAM2:
    with torch.device("meta"):
        return SAM2(config)


@pytest.fixture(scope="module")
def small_state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: v.clone() for k, v in SAM2(SMALL).state_dict().items()}


@pytest.fixture
def small_checkpoint(tmp_path: Path, small_state_dict: dict[str, torch.Tensor]) -> Path:
    path = tmp_path / "small.pt"
    torch.save({"model": small_state_dict}, path)
    return path


def save(tmp_path: Path, obj: object, name: str = "bad.pt") -> Path:
    path = tmp_path / name
    torch.save(obj, path)
    return path


# ------------------------------------------------------------------ official variants


@pytest.mark.parametrize("name", list(CONFIGS))
def test_infer_config_recognises_every_official_variant(name: str) -> None:
    state_dict = meta_model(CONFIGS[name]).state_dict()
    assert infer_config(state_dict) == CONFIGS[name]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_parameter_count_equals_official(name: str) -> None:
    model = meta_model(CONFIGS[name])
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMETER_COUNTS[name]


def test_registry_covers_every_official_config() -> None:
    assert set(REGISTRY) == set(CONFIGS) == set(OFFICIAL_PARAMETER_COUNTS)


def test_infer_config_names_2_1_even_when_one_2_1_tensor_is_missing() -> None:
    # The missing tensor is then reported by load_model, not hidden behind "no variant".
    state_dict = meta_model(CONFIGS["sam2.1_hiera_tiny"]).state_dict()
    del state_dict["no_obj_embed_spatial"]
    assert infer_config(state_dict) == CONFIGS["sam2.1_hiera_tiny"]


def test_infer_config_rejects_a_non_official_model(small_state_dict: dict[str, torch.Tensor]) -> None:
    with pytest.raises(CheckpointError, match="no official SAM 2 variant.*config="):
        infer_config(small_state_dict, source="small.pt")


# ------------------------------------------------------------------ names and download


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("sam2.1_hiera_tiny", "sam2.1_hiera_tiny"),
        ("sam2.1_hiera_t", "sam2.1_hiera_tiny"),
        ("sam2.1_hiera_b+", "sam2.1_hiera_base_plus"),
        ("sam2.1-hiera-tiny", "sam2.1_hiera_tiny"),
        ("facebook/sam2.1-hiera-large", "sam2.1_hiera_large"),
        ("facebook/sam2-hiera-base-plus", "sam2_hiera_base_plus"),
        ("SAM2_Hiera_S", "sam2_hiera_small"),
        ("sam2_hiera_large.pt", "sam2_hiera_large"),
        ("sam3_hiera_tiny", None),
        ("sam2.1_hiera_huge", None),
    ],
)
def test_canonical_name_accepts_common_aliases(alias: str, name: str | None) -> None:
    assert canonical_name(alias) == name


def test_registry_name_uses_the_cached_official_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub

    calls = []
    target = tmp_path / "sam2.1_hiera_base_plus.pt"
    target.write_bytes(b"")

    def cached(repo_id: str, filename: str, **kwargs: object) -> str:
        calls.append((repo_id, filename, kwargs))
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", cached)
    assert resolve_checkpoint("sam2.1_hiera_b+") == target
    repo_file = ("facebook/sam2.1-hiera-base-plus", "sam2.1_hiera_base_plus.pt")
    assert calls == [(*repo_file, {"local_files_only": True})]


def test_registry_name_downloads_when_not_cached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub

    target = tmp_path / "sam2_hiera_large.pt"
    target.write_bytes(b"")
    checked = []

    def download(repo_id: str, filename: str, local_files_only: bool = False) -> str:
        if local_files_only:
            raise huggingface_hub.errors.LocalEntryNotFoundError("not in the cache")
        assert (repo_id, filename) == ("facebook/sam2-hiera-large", "sam2_hiera_large.pt")
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda url, **kw: checked.append(url))
    assert resolve_checkpoint("facebook/sam2-hiera-large") == target
    assert checked and "sam2_hiera_large.pt" in checked[0]


def test_offline_download_says_how_to_pass_a_local_file(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def offline(*args: object, **kwargs: object) -> str:
        raise OSError("Cannot reach the hub: no network")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(WeightsUnavailableError) as info:
        load_model("sam2.1_hiera_tiny")
    message = str(info.value)
    assert "\n" not in message
    assert "sam2.1_hiera_tiny" in message
    assert "load_model('/path/to/sam2.1_hiera_tiny.pt')" in message
    assert "huggingface.co/facebook/sam2.1-hiera-tiny" in message


def test_unknown_name_lists_the_known_names() -> None:
    with pytest.raises(UnknownModelError, match="unknown model 'sam3_hiera_tiny'.*sam2.1_hiera_tiny") as info:
        load_model("sam3_hiera_tiny")
    assert isinstance(info.value, ValueError)


def _offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def offline(*args: object, **kwargs: object) -> str:
        raise OSError("offline")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)


def test_default_model_without_a_bundled_model_asks_for_sam2_1_tiny(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _offline_hub(monkeypatch)
    monkeypatch.setattr(weights, "bundled_path", lambda name: tmp_path / "not-installed.pt")
    assert weights.default_model() == "sam2.1_hiera_tiny"
    with pytest.raises(WeightsUnavailableError, match="sam2.1_hiera_tiny"):
        load_model()


def test_default_model_is_the_cached_official_tiny(monkeypatch: pytest.MonkeyPatch, small_checkpoint: Path) -> None:
    monkeypatch.setattr(weights, "official_cached", lambda name: small_checkpoint)
    assert weights.default_model() == "sam2.1_hiera_tiny"


def test_default_model_offline_is_the_bundled_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _offline_hub(monkeypatch)
    torch.manual_seed(1)
    bundled = export_model(SAM2(SMALL), tmp_path / "bundled.pt")
    monkeypatch.setattr(weights, "bundled_path", lambda name: bundled if "cells" in name else None)
    assert weights.default_model() == "napari-sam2-cells"
    model = load_model()
    assert model.config == SMALL  # the config the checkpoint carries
    assert resolve_checkpoint("cells") == bundled  # alias


def test_the_bundled_file_ships_inside_the_package() -> None:
    path = weights.bundled_path("napari-sam2-cells")
    assert path.is_file() and path.resolve().is_relative_to(Path(napari_sam2.__file__).parent.resolve())
    assert weights.bundled_path("sam2.1_hiera_tiny") is None


def test_bundled_model_loads_by_name_without_a_config_and_keeps_its_calibration() -> None:
    from napari_sam2.model.config import CELLS_CONFIG

    path = weights.bundled_path("napari-sam2-cells")
    assert path.stat().st_size <= 20_000_000  # the limit for the shipped file
    _, config = read_checkpoint(path)
    assert (config.presence_bias_t, config.presence_bias_z) != (0.0, 0.0)  # calibrated: the check below can fail
    model = load_model("napari-sam2-cells")
    assert model.config == config and model.config.architecture() == CELLS_CONFIG


def test_missing_bundled_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(weights, "bundled_path", lambda name: tmp_path / "gone.pt")
    with pytest.raises(WeightsUnavailableError, match="bundled model 'napari-sam2-cells' is missing"):
        load_model("napari-sam2-cells")


def test_checkpoint_carrying_its_config_needs_no_config(tmp_path: Path) -> None:
    torch.manual_seed(2)
    source = SAM2(SMALL)
    path = export_model(source, tmp_path / "own.pt", dtype=torch.float16, note="test")
    model = load_model(path)
    assert model.config == SMALL and model.dtype == torch.float32
    half = source.state_dict()["sam_mask_decoder.iou_token.weight"].half().float()
    assert torch.equal(model.state_dict()["sam_mask_decoder.iou_token.weight"], half)
    state, config = read_checkpoint(path)
    assert config == SMALL and state.keys() == source.state_dict().keys()


def test_checkpoint_with_an_invalid_config_is_reported(tmp_path: Path, small_state_dict: dict) -> None:
    path = save(tmp_path, {"model": small_state_dict, "config": '{"no_such_field": 1}'})
    with pytest.raises(CheckpointError, match="carries an invalid config"):
        load_model(path)


# ------------------------------------------------------------------ loading


@pytest.mark.parametrize("config_form", ["dataclass", "dict", "json"])
def test_small_checkpoint_round_trips_through_load_model(
    small_checkpoint: Path, small_state_dict: dict[str, torch.Tensor], tmp_path: Path, config_form: str
) -> None:
    if config_form == "dataclass":
        config: object = SMALL
    elif config_form == "dict":
        config = SMALL.to_dict()
    else:
        config = tmp_path / "config.json"
        config.write_text(SMALL.to_json())
    model = load_model(small_checkpoint, config=config)
    assert model.config == SMALL
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    loaded = model.state_dict()
    assert loaded.keys() == small_state_dict.keys()
    for key, tensor in small_state_dict.items():
        assert torch.equal(loaded[key], tensor), key


def test_bare_state_dict_loads_like_the_official_format(
    tmp_path: Path, small_state_dict: dict[str, torch.Tensor]
) -> None:
    path = save(tmp_path, small_state_dict, "bare.pt")
    model = load_model(str(path), config=SMALL)
    assert torch.equal(model.no_mem_embed, small_state_dict["no_mem_embed"])


def test_safetensors_checkpoint_loads(tmp_path: Path, small_state_dict: dict[str, torch.Tensor]) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    path = tmp_path / "small.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in small_state_dict.items()}, str(path))
    model = load_model(path, config=SMALL)
    assert torch.equal(model.no_mem_embed, small_state_dict["no_mem_embed"])


def test_dtype_is_applied(small_checkpoint: Path) -> None:
    model = load_model(small_checkpoint, "cpu", config=SMALL, dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_auto_device_falls_back_to_cpu(small_checkpoint: Path) -> None:
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("this machine has an accelerator")
    model = load_model(small_checkpoint, "auto", config=SMALL)
    assert {p.device.type for p in model.parameters()} == {"cpu"}


def test_read_state_dict_unwraps_the_official_format(small_checkpoint: Path) -> None:
    state_dict = read_state_dict(small_checkpoint)
    assert "image_encoder.trunk.patch_embed.proj.weight" in state_dict
    assert all(isinstance(v, torch.Tensor) for v in state_dict.values())


# ------------------------------------------------------------------ bad files


def assert_one_line_naming(exc: BaseException, path: Path, *fragments: str) -> None:
    message = str(exc)
    assert "\n" not in message, message
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "sam2.1_hiera_tiny.pt"
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert_one_line_naming(info.value, path, "does not exist")


def test_truncated_file_is_reported(tmp_path: Path, small_checkpoint: Path) -> None:
    data = small_checkpoint.read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        load_model(path, config=SMALL)
    assert_one_line_naming(info.value, path, "truncated or corrupt")


def test_random_bytes_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "random.pt"
    path.write_bytes(random.Random(1).randbytes(4096))
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert_one_line_naming(info.value, path, "could not be read")


def test_pickle_with_custom_class_is_refused(tmp_path: Path) -> None:
    path = save(tmp_path, {"model": NotATensor()})
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert_one_line_naming(info.value, path, "not a plain-tensor checkpoint", "NotATensor", "refused for safety")
    assert "weights_only=False" not in str(info.value)  # never the advice to load it unsafely


def test_non_sam2_state_dict_is_rejected(tmp_path: Path) -> None:
    path = save(tmp_path, {"model": {"foo": torch.zeros(3)}})
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert_one_line_naming(info.value, path, "not a SAM 2 checkpoint", "foo")


def test_sam1_checkpoint_is_recognised(tmp_path: Path) -> None:
    path = save(tmp_path, {"image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16)})
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert_one_line_naming(info.value, path, "SAM 1")


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        ([torch.zeros(3)], "holds a list"),
        ({"model": {"a.weight": torch.zeros(3), "a.step": 3}}, "entry 'a.step' is a int"),
        ({}, "empty"),
    ],
)
def test_non_tensor_contents_are_rejected(tmp_path: Path, obj: object, fragment: str) -> None:
    path = save(tmp_path, obj)
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert_one_line_naming(info.value, path, fragment)


def test_missing_tensor_is_named(tmp_path: Path, small_state_dict: dict[str, torch.Tensor]) -> None:
    state_dict = {k: v for k, v in small_state_dict.items() if k != "no_mem_embed"}
    path = save(tmp_path, {"model": state_dict})
    with pytest.raises(CheckpointError) as info:
        load_model(path, config=SMALL)
    assert_one_line_naming(info.value, path, "1 missing tensor(s): no_mem_embed")


def test_unexpected_tensor_is_named(tmp_path: Path, small_state_dict: dict[str, torch.Tensor]) -> None:
    path = save(tmp_path, {"model": {**small_state_dict, "extra_head.weight": torch.zeros(2)}})
    with pytest.raises(CheckpointError) as info:
        load_model(path, config=SMALL)
    assert_one_line_naming(info.value, path, "1 unexpected tensor(s): extra_head.weight")


def test_wrong_shape_is_named(tmp_path: Path, small_state_dict: dict[str, torch.Tensor]) -> None:
    key = "sam_mask_decoder.iou_token.weight"
    state_dict = dict(small_state_dict)
    good = tuple(state_dict[key].shape)
    state_dict[key] = torch.zeros(good[0] + 1, good[1])
    path = save(tmp_path, {"model": state_dict})
    with pytest.raises(CheckpointError) as info:
        load_model(path, config=SMALL)
    assert_one_line_naming(info.value, path, "1 wrong shape(s)", key, str(good))


def test_non_official_checkpoint_without_config_asks_for_one(small_checkpoint: Path) -> None:
    with pytest.raises(CheckpointError) as info:
        load_model(small_checkpoint)
    assert_one_line_naming(info.value, small_checkpoint, "no official SAM 2 variant", "config=")
