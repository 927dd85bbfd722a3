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
