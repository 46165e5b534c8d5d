"""``python -m lpcv``: the ``lpcv`` command line (see :mod:`lpcv.cli`).

Examples
--------
>>> import subprocess, sys
>>> out = subprocess.run([sys.executable, "-m", "lpcv", "version"], capture_output=True,
...                      text=True)
>>> out.returncode, out.stdout.startswith("lpcv ")
(0, True)
"""
from __future__ import annotations

import sys

from .cli import main

__all__: list = []

if __name__ == "__main__":
    sys.exit(main())
