"""Deprecated location: see `bwloader_core.device`."""
from .device import available_backends, cuda_unavailable_reason, resolve_backend  # noqa: F401

_cuda_unavailable_reason = cuda_unavailable_reason
