from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import DATASETS


@pytest.fixture
def carbon_dir() -> Path:
    d = DATASETS / "carbon-intensity"
    if not all((d / f).is_file() for f in ("ger_ci.csv", "gb_ci.csv", "fr_ci.csv")):
        pytest.skip(
            f"carbon-intensity dataset not found at {d} (set TWINEDGE_DATASETS to its parent folder)"
        )
    return d
