"""Small helpers the dashboard's models share: readable errors, config knobs and copies, sizes."""
from __future__ import annotations

from bwloader_core.config import LoaderConfig, LoaderConfigError


class PathOutsideRootError(ValueError):
    """A path that resolves (through '..' or symlinks) outside the data root."""


def error_text(exc: BaseException) -> str:
    """One readable line for any exception (KeyError's repr quotes dropped)."""
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, (LoaderConfigError, PathOutsideRootError)):
        return str(msg)
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def knob_names() -> list[str]:
    """The LoaderConfig settings (every parameter but `name`)."""
    return [n for n in LoaderConfig.param if n != "name"]


def config_copy(cfg: LoaderConfig, **changes) -> LoaderConfig:
    """A new LoaderConfig with the settings of `cfg`, some of them changed."""
    spec = {n: getattr(cfg, n) for n in knob_names()}
    spec.update(changes)
    out = LoaderConfig()
    out.param.update(**spec)
    return out


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
