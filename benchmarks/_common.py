"""Argument handling shared by the one-part scripts in this folder (not part of the package)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# Runnable from a checkout without installing: the package is one folder up.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def parse(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="the small CI setting")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--json", type=Path, help="also write this part's raw results here")
    args = parser.parse_args()
    threads = os.environ.get("OGA_THREADS")
    if threads:
        import torch

        torch.set_num_threads(max(1, int(threads)))
    return args


def save(part: dict, path: Path | None) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(part, indent=2, default=str))
