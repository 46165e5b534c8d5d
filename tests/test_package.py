"""Packaging and layering rules (DESIGN.md §1, §7, §8)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import lpcv

ROOT = Path(__file__).resolve().parents[1]


def test_version_matches_installed_metadata():
    assert lpcv.__version__ == metadata.version("lpcv")


def test_imports_without_library_path():
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    out = subprocess.run([sys.executable, "-c", "import lpcv, lpcv._core; print('ok')"],
                         env=env, capture_output=True, text=True, cwd=str(ROOT.parent))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_public_names_are_listed():
    for name in lpcv.__all__:
        assert hasattr(lpcv, name), name


def _sources(folder: str, suffixes=(".hpp", ".cpp", ".h")):
    base = ROOT / folder
    if not base.is_dir():
        pytest.skip(f"source folder {folder} not present (installed without sources)")
    return [p for p in base.rglob("*") if p.suffix in suffixes]


def test_onednn_only_in_runtime_sources():
    for p in _sources("cpp"):
        text = p.read_text()
        if "dnnl" in text and re.search(r"#include\s*[<\"]oneapi/dnnl", text):
            assert p.parts[-3:-1] == ("src", "runtime"), f"{p} includes oneDNN"


def test_no_onednn_type_in_public_headers():
    for p in _sources("cpp/include"):
        assert "dnnl::" not in p.read_text(), f"{p} exposes a oneDNN type"


def test_pybind11_only_in_bindings():
    for p in _sources("cpp"):
        assert "pybind11" not in p.read_text(), f"{p} includes pybind11"
