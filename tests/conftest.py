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


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tiny-model training on one torch thread, then restore the setting.

    Tiny models train fastest on one thread; on a busy 2-core machine two threads spin against
    each other (10-20x slower). Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
