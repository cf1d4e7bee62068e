"""Fixtures every test module may use."""

from __future__ import annotations

from pathlib import Path

import pytest
from shared import SMALL_YAML


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary current folder holding small.yaml (tests/shared.py's SMALL)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.yaml").write_text(SMALL_YAML)
    return tmp_path
