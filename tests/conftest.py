"""Fixtures shared by the test modules of the accuracy labs (08, 09)."""

import pytest

from common import datasets


@pytest.fixture(scope="session")
def digits():
    """The shipped digits set, split once for the whole test session."""
    return datasets.digits()
