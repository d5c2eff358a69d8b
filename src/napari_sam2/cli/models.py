"""``napari-sam2 models``: the bundled and the official models, and where each one's weights are
(the bundled file, the Hugging Face cache, or not yet downloaded).
"""

from __future__ import annotations

import argparse
from typing import Any


def _add_models(commands: Any) -> None:
    models = commands.add_parser("models", help="list the official models and which are cached locally")
    models.add_argument("--debug", action="store_true", help="show the Python traceback of an error")


def _models(args: argparse.Namespace) -> int:
    from ..weights import BUNDLED, REGISTRY, bundled_path

    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        try_to_load_from_cache = None
    rows = [("name", "Hugging Face repository", "file", "cached")]
    for name, filename in BUNDLED.items():
        path = bundled_path(name)
        where = str(path) if path is not None and path.is_file() else "missing"
        rows.append((name, "(bundled with napari-sam2)", filename, where))
    for name, (repo_id, filename) in REGISTRY.items():
        cached = try_to_load_from_cache(repo_id, filename) if try_to_load_from_cache else None
        rows.append((name, repo_id, filename, cached if isinstance(cached, str) else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
    return 0
