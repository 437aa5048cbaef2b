"""The one way a test reaches ../shared, the folder CI keeps beside the checkout (evaluation
sets, vendored sources). A user's clone has no such folder, so a test that needs it asks for
the `shared_data` fixture: it gets the folder, or is skipped saying what is missing. Every such
test is marked `shared` as well, so CI can run exactly them in its checkout (`make test-shared`)
after the README's test command ran in a clone with nothing beside it (`make test-clean-clone`),
where they skip; a test that opens ../shared any other way fails there.

The folder is $PGASK_SHARED when set (scripts/test.sh sets it to the checkout's ../shared, which
a copied checkout no longer has beside it), else ../shared beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_folder() -> Path:
    """Where ../shared would be for this run (it may not exist)."""
    return Path(os.environ.get("PGASK_SHARED") or REPO.parent / "shared")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    folder = shared_folder()
    if not folder.is_dir():
        pytest.skip(f"{folder} is not here: it holds CI's evaluation sets and vendored sources, "
                    "which a user's clone does not have (CI runs this test: make test-shared)")
    if not os.access(folder, os.R_OK | os.X_OK):
        pytest.skip(f"{folder} exists but this user ({os.getuid()}) cannot read it")
    return folder


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "shared: needs ../shared beside the checkout (the shared_data fixture); "
        "skipped without it, run by CI with make test-shared")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared)
