"""Picks the array module (NumPy or CuPy). Nothing else decides which one is in use."""
from __future__ import annotations

import numpy as np


def get_array_module(backend: str = "cpu"):
    if backend == "cpu":
        return np
    raise ValueError(f"backend {backend!r} is not available (this build supports 'cpu')")


def array_module_of(arr):
    """The module an array belongs to (numpy for anything that is not a CuPy array)."""
    mod = type(arr).__module__
    if mod.startswith("cupy"):
        import cupy
        return cupy
    return np
