"""Device: the one object that decides CPU or CUDA (array module, kernels, inflater, streams).

This module's public helpers say which backends are usable here; nothing is imported or
initialised on import (CuPy and the GPU are only touched when asked).
"""
from __future__ import annotations

import logging

BACKENDS = ("cpu", "cuda", "auto")


def cuda_unavailable_reason() -> str | None:
    """Why backend='cuda' cannot run here, or None when it can."""
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed (pip install 'bwloader[cuda12]' or 'bwloader[cuda13]')"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA GPU is visible"
    except Exception as exc:  # noqa: BLE001 - any CUDA runtime failure means no usable GPU
        return f"no usable CUDA GPU ({exc})"
    return None


def available_backends() -> list[str]:
    """The backend names usable on this machine, for menus: 'cpu', 'auto' and, with a GPU, 'cuda'."""
    return ["cpu", "auto"] + (["cuda"] if cuda_unavailable_reason() is None else [])


def resolve_backend(backend: str) -> str:
    """'cpu', 'cuda' or 'auto' -> the backend to use; 'cuda' without CuPy or a GPU fails clearly."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "cpu":
        return "cpu"
    reason = cuda_unavailable_reason()
    if backend == "auto":
        if reason:
            _log_fallback_once(reason)
            return "cpu"
        return "cuda"
    if reason:
        raise RuntimeError(f"backend='cuda' is not available: {reason}. Use backend='cpu' (or 'auto').")
    return "cuda"


_fallback_logged = False


def _log_fallback_once(reason):
    global _fallback_logged
    if not _fallback_logged:
        logging.getLogger("bwloader").info("backend='auto': using the CPU (%s)", reason)
        _fallback_logged = True
