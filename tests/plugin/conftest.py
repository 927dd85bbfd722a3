"""Plugin tests run pytest in a subprocess (pytester, --runpytest=subprocess in pyproject: torch and
numpy cannot be imported twice in one process), each integration test with and without xdist."""

from __future__ import annotations

import json

import pytest

# digits + LeNet-300-100 trains in milliseconds: plugin tests exercise the real pipeline quickly.
FAST = ("--prune-dataset=digits", "--prune-arch=lenet300_100", "--prune-epochs=1", "-p", "no:randomly")


@pytest.fixture(params=[(), ("-n", "2")], ids=["serial", "xdist"])
def xdist(request):
    """Extra arguments: none, or two xdist workers."""
    return request.param


def records(path):
    document = json.loads(path.read_text())
    assert document["schema"] == "pytest-prune/1"
    return document["results"]
