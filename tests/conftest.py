"""Shared fixtures.

``../shared`` (beside the repository root) holds real datasets in the development and CI
machines but not in a user's clone: tests that read it skip with a reason when it is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """Path to ``../shared/data``; skips the test when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (only present on dev/CI machines)")
    return SHARED_DATA
