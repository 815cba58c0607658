"""Shared fixtures: deterministic test bigWig files (built once per session) and their oracle.

``bw_files`` maps a fixture name to a :class:`data_files.BWFile` (``path``, ``description``,
``oracle_path``, ``chrom_sizes``; it unpacks as ``(path, description)``). Each name in
``data_files.FIXTURE_NAMES`` is also a fixture of its own. ``data_files.oracle_values`` gives
pyBigWig's values for any file.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import data_files  # noqa: E402


@pytest.fixture(scope="session")
def bw_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bigwigs")


@pytest.fixture(scope="session")
def bw_files(bw_dir) -> dict:
    """All test files by name (built once per session, deterministic from data_files.SEED)."""
    return data_files.build_all(bw_dir)


@pytest.fixture(scope="session")
def bw_file_list(bw_files) -> list:
    """All test files as a list of (path, description) pairs (BWFile objects)."""
    return list(bw_files.values())


def _make_fixture(name):
    @pytest.fixture(scope="session", name=name)
    def _fixture(bw_files):
        return bw_files[name]

    _fixture.__doc__ = f"The {name!r} test bigWig (data_files.BWFile)."
    return _fixture


for _name in data_files.FIXTURE_NAMES:
    globals()[f"_fixture_{_name}"] = _make_fixture(_name)


# -- browser tests: pytest-playwright's `browser` fixture on the system Chromium --------------------
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]


def _chromium() -> str | None:
    """/usr/bin/chromium, installed with apt when missing and we may (root, apt-get present)."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        try:
            subprocess.run(["apt-get", "update", "-qq"], env=env, timeout=300, capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, timeout=600, capture_output=True)
        except (OSError, subprocess.SubprocessError):
            pass
    return CHROMIUM if os.path.exists(CHROMIUM) else None


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright launches the system Chromium (`playwright install` cannot download here)."""
    exe = _chromium()
    if exe is None:
        pytest.skip("Chromium is not installed and cannot be installed here (`make test` installs it)")
    return {**browser_type_launch_args, "executable_path": exe, "args": LAUNCH_ARGS, "headless": True}


def pytest_collection_modifyitems(config, items):
    """cuda_compile tests cannot share a process with the simulator (numba reads the switch at
    import): skip them where it is on. cuda_sim tests skip themselves where it is off."""
    from bwloader_core.device import cuda_simulated
    if cuda_simulated():
        skip = pytest.mark.skip(reason="offline compilation cannot run with NUMBA_ENABLE_CUDASIM=1 (own process)")
        for item in items:
            if "cuda_compile" in item.keywords:
                item.add_marker(skip)
