from __future__ import annotations

import subprocess
import sys


def test_importing_the_plugin_imports_no_torch_or_numpy():
    code = (
        "import sys, pytest_prune, pytest_prune.plugin; "
        "print(sorted(m for m in ('torch', 'numpy', 'tabulate', 'torchvision') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_recorded_torch_version_does_not_depend_on_whether_torch_is_loaded(monkeypatch):
    """A CUDA build's ``__version__`` (2.11.0+cu130) can differ from its metadata (2.11.0): serial runs load
    torch in the process that writes the environment, xdist controllers do not, and both must agree."""
    import types
    from importlib.metadata import version

    from pytest_prune.results import torch_version

    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(__version__="9.9.9+cu999"))
    assert torch_version() == version("torch")
    monkeypatch.delitem(sys.modules, "torch")
    assert torch_version() == version("torch")
