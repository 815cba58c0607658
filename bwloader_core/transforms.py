"""Value transforms: an ordered list of elementwise steps applied to each batch's values after
windowing and scaling (Basenji/Borzoi-style target squashing and clipping).

Each step is a frozen dataclass with ``apply(x, xp)``, written against an array module ``xp``
(NumPy, or CuPy on the GPU path), and ``to_spec()`` for the YAML config. The steps:

===========  =======================================  ==============================================
step         parameters                               value
===========  =======================================  ==============================================
clip         max, min (optional)                      ``min(x, max)`` (and ``max(., min)``)
soft_clip    threshold t, style (basenji | borzoi)    basenji: ``t + sqrt(x - t)`` where ``x > t``;
                                                      borzoi: ``t - 1 + sqrt(x - t + 1)`` where ``x > t``
power        exponent p, threshold t (optional)       no t: ``x ** p`` everywhere;
                                                      t: ``t + (x - t) ** p`` where ``x > t``
log1p        (none)                                   ``log(1 + x)``
===========  =======================================  ==============================================

Elsewhere a value is unchanged. NaN stays NaN through every step. Outside a step's domain the
result follows IEEE/NumPy: ``log1p`` of ``x < -1`` is NaN (of -1, -inf); ``power`` everywhere with a
non-integer exponent gives NaN for ``x < 0`` (no warning is raised from the worker threads).

Precision: the steps run in float32, with float32 constants, on the float32 values the loader
would otherwise output. For float16 and bfloat16 output the transforms run on those float32 values
and the result is rounded once to the output dtype (``apply_transforms`` does this for any float16
or bfloat16 input it is given, so the GPU path can use the same rule). Borzoi's ``sum_sqrt`` and
``sum_exp75`` squashes (``-1 + (1 + x) ** p``) are ``power`` with ``threshold: -1``.
"""
from __future__ import annotations

import difflib
import math
from contextlib import nullcontext
from dataclasses import MISSING, dataclass, fields

import numpy as np

__all__ = ["Clip", "SoftClip", "Power", "Log1p", "ValueTransform", "STEPS", "parse_value_transforms",
           "value_transforms_to_spec", "apply_transforms", "apply_transforms_inplace", "describe_transforms",
           "array_module"]


class ValueTransform:
    """One elementwise step. Subclasses are frozen dataclasses; ``name`` is the YAML ``step``."""

    name = ""

    def apply(self, x, xp=np):  # pragma: no cover - every step overrides it
        """The reference: a new array, written against the array module ``xp``."""
        raise NotImplementedError

    def apply_inplace(self, x: np.ndarray) -> None:
        """The CPU hot path: the same float32 operations as ``apply`` (bit for bit), in place on a
        C-contiguous NumPy array, touching only the values a threshold step changes."""
        x[...] = self.apply(x, np)

    def to_spec(self) -> dict:
        """``{"step": name, **parameters}``, optional parameters only where not at their default."""
        spec = {"step": self.name}
        for f in fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                spec[f.name] = value
        return spec

    def describe(self) -> str:
        return self.name


def _number(value, what: str, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)):
        raise ValueError(f"value_transforms: {what} must be a finite number, got {value!r}")
    return float(value)


def _f32(x, value):
    """``value`` as a scalar of ``x``'s dtype, so that no step promotes float32 to float64."""
    return x.dtype.type(value)


def _quiet(xp):
    """Domain errors (log1p of x < -1, a negative base) give NaN and overflow inf, as documented,
    not warnings from the worker threads."""
    return np.errstate(invalid="ignore", divide="ignore", over="ignore") if xp is np else nullcontext()


@dataclass(frozen=True)
class Clip(ValueTransform):
    """Hard clip: ``min(x, max)``, and ``max(x, min)`` when ``min`` is given."""

    max: float
    min: float | None = None
    name = "clip"

    def __post_init__(self):
        object.__setattr__(self, "max", _number(self.max, "clip max"))
        object.__setattr__(self, "min", _number(self.min, "clip min", allow_none=True))
        if self.min is not None and self.min > self.max:
            raise ValueError(f"value_transforms: clip min ({self.min}) is above max ({self.max})")

    def apply(self, x, xp=np):
        out = xp.minimum(x, _f32(x, self.max))       # minimum/maximum propagate NaN
        if self.min is not None:
            out = xp.maximum(out, _f32(x, self.min))
        return out

    def apply_inplace(self, x):
        np.minimum(x, _f32(x, self.max), out=x)
        if self.min is not None:
            np.maximum(x, _f32(x, self.min), out=x)

    def describe(self) -> str:
        return f"clip(max={self.max:g}" + (f", min={self.min:g})" if self.min is not None else ")")


_SOFT_STYLES = {"basenji": 0.0, "borzoi": 1.0}


@dataclass(frozen=True)
class SoftClip(ValueTransform):
    """Square-root soft clip above ``threshold`` t: ``t + sqrt(x - t)`` (Basenji), or
    ``t - 1 + sqrt(x - t + 1)`` (Borzoi: continuous slope 1/2 at t)."""

    threshold: float
    style: str = "basenji"
    name = "soft_clip"

    def __post_init__(self):
        object.__setattr__(self, "threshold", _number(self.threshold, "soft_clip threshold"))
        if self.style not in _SOFT_STYLES:
            close = difflib.get_close_matches(str(self.style), list(_SOFT_STYLES), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"value_transforms: soft_clip style must be one of {list(_SOFT_STYLES)}, "
                             f"got {self.style!r}{hint}")

    def apply(self, x, xp=np):
        t, d = _f32(x, self.threshold), _f32(x, _SOFT_STYLES[self.style])
        zero = _f32(x, 0.0)
        base = t - d                                   # t for basenji, t - 1 for borzoi
        root = xp.sqrt(xp.maximum(x - base, zero))     # the maximum keeps sqrt off negatives
        return xp.where(x > t, base + root, x)         # NaN > t is False: NaN passes through

    def apply_inplace(self, x):
        t = _f32(x, self.threshold)
        base = t - _f32(x, _SOFT_STYLES[self.style])   # in float32, as apply()
        _above_inplace(x, t, lambda v: base + np.sqrt(v - base))

    def describe(self) -> str:
        return f"soft_clip(t={self.threshold:g}" + (", borzoi)" if self.style == "borzoi" else ")")


@dataclass(frozen=True)
class Power(ValueTransform):
    """``x ** exponent`` everywhere, or with ``threshold`` t only above it: ``t + (x - t) ** exponent``
    (continuous at t). ``threshold: -1`` gives Borzoi's ``-1 + (1 + x) ** p`` squash."""

    exponent: float
    threshold: float | None = None
    name = "power"

    def __post_init__(self):
        object.__setattr__(self, "exponent", _number(self.exponent, "power exponent"))
        object.__setattr__(self, "threshold", _number(self.threshold, "power threshold", allow_none=True))
        if self.exponent <= 0:
            raise ValueError(f"value_transforms: power exponent must be > 0, got {self.exponent:g}")

    def apply(self, x, xp=np):
        p = _f32(x, self.exponent)
        with _quiet(xp):
            if self.threshold is None:
                return x ** p
            t = _f32(x, self.threshold)
            return xp.where(x > t, t + xp.maximum(x - t, _f32(x, 0.0)) ** p, x)

    def apply_inplace(self, x):
        p = _f32(x, self.exponent)
        with _quiet(np):
            if self.threshold is None:
                np.power(x, p, out=x)
                return
            t = _f32(x, self.threshold)
            _above_inplace(x, t, lambda v: t + (v - t) ** p)

    def describe(self) -> str:
        return f"power({self.exponent:g}" + (f", above {self.threshold:g})" if self.threshold is not None else ")")


@dataclass(frozen=True)
class Log1p(ValueTransform):
    """``log(1 + x)``."""

    name = "log1p"

    def apply(self, x, xp=np):
        with _quiet(xp):
            return xp.log1p(x)

    def apply_inplace(self, x):
        with _quiet(np):
            np.log1p(x, out=x)


def _above_inplace(x: np.ndarray, t, f) -> None:
    """``x[x > t] = f(x[x > t])`` in place: on the whole array when every value is above ``t``,
    else only on the values above it (NaN never is)."""
    flat = x.reshape(-1)
    above = flat > t
    if above.all():
        flat[...] = f(flat)
        return
    idx = np.flatnonzero(above)
    if idx.size:
        flat[idx] = f(flat[idx])


STEPS: dict[str, type] = {cls.name: cls for cls in (Clip, SoftClip, Power, Log1p)}


def _parse_step(item, i: int) -> ValueTransform:
    where = f"value_transforms[{i}]"
    if isinstance(item, ValueTransform):
        return item
    if isinstance(item, str):
        item = {"step": item}
    if not isinstance(item, dict):
        raise ValueError(f"{where}: a step is a mapping like {{step: clip, max: 100}} or a step name, "
                         f"got {item!r}")
    spec = dict(item)
    name = spec.pop("step", None)
    if name is None:
        raise ValueError(f"{where}: missing 'step' (one of {', '.join(STEPS)}) in {item!r}")
    if name not in STEPS:
        close = difflib.get_close_matches(str(name), list(STEPS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{where}: unknown step {name!r} (steps: {', '.join(STEPS)}){hint}")
    cls = STEPS[name]
    allowed = [f.name for f in fields(cls)]
    for key in spec:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            takes = ", ".join(allowed) if allowed else "no parameters"
            raise ValueError(f"{where}: {name} has no parameter {key!r} (it takes {takes}){hint}")
    required = [f.name for f in fields(cls) if f.default is MISSING]
    missing = [k for k in required if k not in spec]
    if missing:
        raise ValueError(f"{where}: {name} needs {', '.join(missing)}")
    try:
        return cls(**spec)
    except ValueError as exc:
        raise ValueError(f"{where}: {str(exc).removeprefix('value_transforms: ')}") from None


def parse_value_transforms(spec) -> tuple[ValueTransform, ...]:
    """A list of steps (mappings with ``step``, bare step names, or ValueTransform objects) -> a
    tuple of ValueTransform; None or [] -> (). Errors name the step and suggest the nearest name."""
    if spec is None:
        return ()
    if isinstance(spec, (str, dict, ValueTransform)):
        spec = [spec]
    if not isinstance(spec, (list, tuple)):
        raise ValueError(f"value_transforms must be a list of steps, got {type(spec).__name__}")
    return tuple(_parse_step(item, i) for i, item in enumerate(spec))


def value_transforms_to_spec(steps) -> list[dict]:
    """The plain, YAML-ready form of a list of steps."""
    return [s.to_spec() for s in parse_value_transforms(steps)]


def describe_transforms(steps) -> str:
    """One line for humans: ``power(0.75, above -1) -> soft_clip(t=384) -> clip(max=768)``."""
    steps = parse_value_transforms(steps)
    return " -> ".join(s.describe() for s in steps) if steps else "none"


def apply_transforms(values, steps, xp=None):
    """Apply ``steps`` in order to ``values`` (a NumPy or CuPy array) and return the result, of the
    same dtype. float32 (and float64) arrays are transformed in their own precision; float16 and
    bfloat16 arrays are widened to float32, transformed and rounded once back to their dtype."""
    steps = parse_value_transforms(steps)
    if not steps:
        return values
    if xp is None:
        xp = array_module(values)
    dtype = values.dtype
    work = values if dtype in (np.float32, np.float64) else values.astype(np.float32)
    for step in steps:
        work = step.apply(work, xp)
    return work if work.dtype == dtype else work.astype(dtype)


def apply_transforms_inplace(values: np.ndarray, steps) -> np.ndarray:
    """The CPU hot path of :func:`apply_transforms` for a C-contiguous float32 NumPy array that the
    caller owns: transformed in place (bit for bit the reference's result) and returned."""
    steps = parse_value_transforms(steps)
    if values.dtype != np.float32 or not values.flags.c_contiguous or not values.flags.writeable:
        raise ValueError("apply_transforms_inplace needs a writeable, C-contiguous float32 array")
    for step in steps:
        step.apply_inplace(values)
    return values


def array_module(x):
    """NumPy for NumPy arrays, CuPy for CuPy arrays (imported only when one is given)."""
    if isinstance(x, np.ndarray):
        return np
    mod = type(x).__module__.split(".")[0]
    if mod == "cupy":
        import cupy
        return cupy
    return np
