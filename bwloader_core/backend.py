"""Picks the array module (NumPy or CuPy). Nothing else decides which one is in use."""
from __future__ import annotations

import numpy as np


def get_array_module(backend: str = "cpu"):
    if backend == "cpu":
        return np
    raise ValueError(f"backend {backend!r} is not available (this build supports 'cpu')")


def resolve_backend(backend: str) -> str:
    """'cpu', 'cuda' or 'auto' -> the backend to use; 'cuda' without CuPy or a GPU fails clearly."""
    if backend not in ("cpu", "cuda", "auto"):
        raise ValueError(f"backend must be 'cpu', 'cuda' or 'auto', got {backend!r}")
    if backend == "cpu":
        return "cpu"
    reason = _cuda_unavailable_reason()
    if backend == "auto":
        if reason:
            _log_fallback_once(reason)
            return "cpu"
        return "cuda"
    if reason:
        raise RuntimeError(f"backend='cuda' is not available: {reason}. Use backend='cpu' (or 'auto').")
    raise RuntimeError("backend='cuda' is not implemented in this build yet; use backend='cpu'")


def _cuda_unavailable_reason():
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed (pip install 'bwloader[gpu]')"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA GPU is visible"
    except Exception as exc:  # noqa: BLE001 - any CUDA runtime failure means no usable GPU
        return f"no usable CUDA GPU ({exc})"
    return None


_fallback_logged = False


def _log_fallback_once(reason):
    global _fallback_logged
    if not _fallback_logged:
        import logging
        logging.getLogger("bwloader").info("backend='auto': using the CPU (%s)", reason)
        _fallback_logged = True
