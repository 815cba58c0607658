"""Output dtypes: float32, float16 and bfloat16 (as `ml_dtypes.bfloat16`, a NumPy dtype)."""
from __future__ import annotations

import numpy as np

OUTPUT_DTYPES = ("float32", "float16", "bfloat16")


def resolve_dtype(dtype):
    """Map a dtype name (or dtype) to a NumPy dtype; bfloat16 comes from ml_dtypes."""
    name = getattr(dtype, "name", None) or str(dtype)
    name = {"bf16": "bfloat16", "fp32": "float32", "fp16": "float16", "half": "float16"}.get(name, name)
    if name not in OUTPUT_DTYPES:
        raise ValueError(f"dtype {dtype!r} is not supported; choose one of {', '.join(OUTPUT_DTYPES)}")
    if name == "bfloat16":
        import ml_dtypes
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def cast_output(values, dtype):
    """Cast to the output dtype via float32, so every dtype is the float32 value rounded once more
    (round to nearest even), and return a C-contiguous array that the caller owns."""
    dt = resolve_dtype(dtype)
    v = np.ascontiguousarray(values, dtype=np.float32)
    if dt == np.float32:
        return v
    return v.astype(dt)
