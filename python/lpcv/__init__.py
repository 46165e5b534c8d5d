"""lpcv: compress and profile neural networks for low-power devices."""
from __future__ import annotations

from ._version import __version__
from .graph import Model, Node, ValueInfo

__all__ = ["__version__", "Model", "Node", "ValueInfo"]
