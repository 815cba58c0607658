"""Device: the one object that decides CPU or CUDA (array module, kernels, inflater, streams).

A `Device` is chosen once, when a collection (or a BatchProcessor) is made; every stage asks it
which implementation to run. Nothing here imports CuPy or touches a GPU on import: only building
a CUDA device or its per-worker `CudaContext` does.

Environment variables are documented overrides of the defaults, read when a Device is built:

- ``BWLOADER_KERNEL=numpy`` runs the NumPy reference of every CPU stage instead of numba;
- ``BWLOADER_NATIVE_FETCH=0`` reads and inflates on the Python path (no compiled pread + inflate);
- ``BWLOADER_PARTIAL_INFLATE=0`` inflates every block whole;
- ``BWLOADER_IN_PLACE=0`` copies blocks of uncompressed files into the slot buffer instead of
  reading them where they lie in a memory map;
- ``BWLOADER_CUDA_INFLATE=cpu`` makes a CUDA device inflate on CPU threads and upload the words
  (the "hybrid" path, also taken automatically when nvCOMP is missing).

With ``NUMBA_ENABLE_CUDASIM=1`` (set before numba is imported) a CUDA device runs its kernels in
numba's simulator on NumPy arrays, with the CPU inflater standing in for nvCOMP: the whole GPU
pipeline's logic, without a GPU.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

BACKENDS = ("cpu", "cuda", "auto")
log = logging.getLogger("bwloader")


def cuda_simulated() -> bool:
    """True when numba's CUDA simulator is switched on for this process."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def cuda_unavailable_reason() -> str | None:
    """Why backend='cuda' cannot run here, or None when it can (the simulator counts as a GPU)."""
    if cuda_simulated():
        try:
            import numba.cuda  # noqa: F401
        except ImportError:
            return "numba-cuda is not installed (pip install 'numba-cuda[cu12]')"
        return None
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed (pip install 'bwloader[cuda12]' or 'bwloader[cuda13]')"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA GPU is visible"
    except Exception as exc:  # noqa: BLE001 - any CUDA runtime failure means no usable GPU
        return f"no usable CUDA GPU ({exc})"
    try:
        import numba.cuda  # noqa: F401
    except ImportError:
        return "numba-cuda is not installed (pip install 'bwloader[cuda12]')"
    return None


def nvcomp_unavailable_reason() -> str | None:
    """Why nvCOMP's batched Deflate cannot be used, or None when it can."""
    if cuda_simulated():
        return "the CUDA simulator has no nvCOMP (the CPU inflater stands in)"
    try:
        from nvidia import nvcomp  # noqa: F401
    except ImportError:
        return "nvCOMP's Python package is not installed (pip install nvidia-nvcomp-cu12 or -cu13)"
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
            _log_once("auto", "backend='auto': using the CPU (%s)", reason)
            return "cpu"
        return "cuda"
    if reason:
        raise RuntimeError(f"backend='cuda' is not available: {reason}. Use backend='cpu' (or 'auto').")
    return "cuda"


_logged: set = set()


def _log_once(key, msg, *args, level=logging.INFO):
    if key not in _logged:
        _logged.add(key)
        log.log(level, msg, *args)


def _env_flag(name: str, default: bool) -> bool:
    v = os.environ.get(name)
    return default if v is None else v != "0"


@dataclass(frozen=True)
class Device:
    """Which implementation every stage runs.

    kind: 'cpu' or 'cuda'. kernels: 'numba' (compiled) or 'numpy' (the reference) for the CPU
    stages. native_fetch: compiled pread + inflate on CPU threads. partial_inflate: stop
    inflating a block once the items a batch needs are out (CPU). inflater (cuda): 'nvcomp'
    (on the GPU) or 'cpu' (CPU threads, then one upload of the words). simulated: the CUDA
    kernels run in numba's simulator on NumPy arrays. read_in_place (cpu): blocks of local
    uncompressed files are searched where they lie in a memory map, not copied."""
    kind: str = "cpu"
    kernels: str = "numba"
    native_fetch: bool = True
    partial_inflate: bool = True
    inflater: str = "cpu"
    simulated: bool = False
    read_in_place: bool = True

    def __post_init__(self):
        if self.kind not in ("cpu", "cuda"):
            raise ValueError(f"device kind must be 'cpu' or 'cuda', got {self.kind!r}")
        if self.kernels not in ("numba", "numpy"):
            raise ValueError(f"kernels must be 'numba' or 'numpy', got {self.kernels!r}")
        if self.inflater not in ("cpu", "nvcomp"):
            raise ValueError(f"inflater must be 'cpu' or 'nvcomp', got {self.inflater!r}")

    @classmethod
    def cpu(cls, kernels: str | None = None, native_fetch: bool | None = None,
            partial_inflate: bool | None = None, read_in_place: bool | None = None) -> "Device":
        """The CPU device; arguments left None take the environment overrides or the defaults."""
        if kernels is None:
            kernels = os.environ.get("BWLOADER_KERNEL", "numba")
            if kernels not in ("numba", "numpy"):
                kernels = "numba"
        return cls("cpu", kernels,
                   _env_flag("BWLOADER_NATIVE_FETCH", True) if native_fetch is None else bool(native_fetch),
                   _env_flag("BWLOADER_PARTIAL_INFLATE", True) if partial_inflate is None else bool(partial_inflate),
                   read_in_place=_env_flag("BWLOADER_IN_PLACE", True) if read_in_place is None else bool(read_in_place))

    @classmethod
    def cuda(cls, inflater: str | None = None) -> "Device":
        """The CUDA device (real, or simulated under NUMBA_ENABLE_CUDASIM); raises a clear
        RuntimeError when it cannot run. Without nvCOMP it inflates on CPU threads (logged once)."""
        reason = cuda_unavailable_reason()
        if reason:
            raise RuntimeError(f"backend='cuda' is not available: {reason}. Use backend='cpu' (or 'auto').")
        if inflater is None:
            inflater = os.environ.get("BWLOADER_CUDA_INFLATE", "nvcomp")
        if inflater == "nvcomp" and not cuda_simulated():      # simulated: libdeflate stands in for nvCOMP
            why = nvcomp_unavailable_reason()
            if why:
                _log_once("nvcomp", "backend='cuda': inflating on CPU threads, then uploading (%s)", why)
                inflater = "cpu"
        base = cls.cpu()
        return cls("cuda", "numba", base.native_fetch, base.partial_inflate, inflater, cuda_simulated(),
                   read_in_place=False)

    @classmethod
    def resolve(cls, backend) -> "Device":
        """A Device from a backend name ('cpu', 'cuda', 'auto') or a Device (returned as is)."""
        if isinstance(backend, Device):
            return backend
        return cls.cuda() if resolve_backend(backend) == "cuda" else cls.cpu()

    @property
    def name(self) -> str:
        """'cpu', 'cuda' or 'cuda (hybrid: CPU inflate)' (+ ' [simulated]'), for displays and logs."""
        if self.kind == "cpu":
            return "cpu"
        name = "cuda" if self.inflater == "nvcomp" else "cuda (hybrid: CPU inflate)"
        return name + (" [simulated]" if self.simulated else "")

    @property
    def xp(self):
        """The array module of this device's outputs: NumPy, or CuPy on a real GPU."""
        if self.kind == "cuda" and not self.simulated:
            import cupy
            return cupy
        return np

    def context(self):
        """Per-worker resources: None on CPU; on CUDA a `CudaContext` (its stream, buffers)."""
        if self.kind == "cpu":
            return None
        from .cuda_context import CudaContext
        return CudaContext(self)
