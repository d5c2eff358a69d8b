"""Files in and out: prompt files (napari CSV, JSON) and OME-Zarr label stacks.

No torch, Qt or napari here: numpy, zarr and dask only, so the CLI, the dask batch and the
napari widgets share it.
"""

from __future__ import annotations

from .labels import LabelWriter, StoredLabels, label_dtype, read_labels, write_labels
from .prompts import (
    Prompt,
    merge_prompts,
    napari_to_xy,
    prompts_from_dict,
    prompts_to_dict,
    read_points_csv,
    read_prompts,
    read_prompts_json,
    read_shapes_csv,
    read_stack_kind,
    write_prompts_json,
    xy_to_napari,
)

__all__ = [
    "LabelWriter",
    "Prompt",
    "StoredLabels",
    "label_dtype",
    "merge_prompts",
    "napari_to_xy",
    "prompts_from_dict",
    "prompts_to_dict",
    "read_labels",
    "read_points_csv",
    "read_prompts",
    "read_prompts_json",
    "read_shapes_csv",
    "read_stack_kind",
    "write_labels",
    "write_prompts_json",
    "xy_to_napari",
]
