"""The docs say what the code does: the README's Python example runs as written, offline."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_python_example_runs_offline() -> None:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert blocks, "the README has a Python example"
    code = blocks[0] + "\nassert masks.shape[0] == 3 and scores.shape == (3,) and masks.any()\n"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(ROOT / "no-such-hub-cache")}  # nothing cached
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
