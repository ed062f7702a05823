"""Shared test set-up: an isolated app home, deliberate thread counts, small real data."""

from __future__ import annotations

import os

import pytest
import torch

# CI runs pytest beside a Streamlit server and a browser on 2 cores; two processes each spinning
# 2 OpenMP threads ran small ops 25-170x slower (DESIGN.md section 4). One thread per process.
torch.set_num_threads(1)
os.environ.setdefault("OGA_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory: pytest.TempPathFactory):
    """Every test session gets its own OGA_HOME, so tests never read or write ~/.oga."""
    home = tmp_path_factory.mktemp("oga_home")
    old = os.environ.get("OGA_HOME")
    os.environ["OGA_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("OGA_HOME", None)
    else:
        os.environ["OGA_HOME"] = old
