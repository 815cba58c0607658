#!/usr/bin/env python
"""Run the test suite as `make test` does: three pytest processes, one summary.

1. the suite (everything but the CUDA simulator and compile tests);
2. the GPU path in numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1, set before numba is imported);
3. every CUDA kernel compiled to PTX for sm_80 / sm_90 (cannot share a process with the simulator).

A run that collects no test (pytest's exit code 5) fails: it means a part of the suite vanished.
Extra arguments go to every pytest run. Ends with one line, `N passed, N failed, N skipped`.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

RUNS = [
    ("suite", ["-m", "not cuda_sim and not cuda_compile"], {}),
    ("cuda simulator", ["-m", "cuda_sim"], {"NUMBA_ENABLE_CUDASIM": "1"}),
    ("cuda compile", ["-m", "cuda_compile"], {}),
]
_COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)")


def main(argv: list[str]) -> int:
    totals = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
    bad = []
    for name, args, env in RUNS:
        print(f"\n=== {name}: pytest {' '.join(args)} ===", flush=True)
        run_env = dict(os.environ, **env)
        if not env:
            run_env.pop("NUMBA_ENABLE_CUDASIM", None)
        p = subprocess.Popen([sys.executable, "-m", "pytest", "-q", *args, *argv], env=run_env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        last = ""
        for line in p.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if _COUNT.search(line):
                last = line
        rc = p.wait()
        for n, what in _COUNT.findall(last):
            key = "error" if what.startswith("error") else ("passed" if what == "xpassed" else
                                                             "skipped" if what == "xfailed" else what)
            totals[key] += int(n)
        if rc == 5:
            bad.append(f"{name}: no tests collected")
        elif rc != 0:
            bad.append(f"{name}: pytest exit code {rc}")
    print()
    for b in bad:
        print(f"FAILED RUN {b}")
    failed = totals["failed"] + totals["error"]
    print(f"{totals['passed']} passed, {failed} failed, {totals['skipped']} skipped")
    return 1 if bad or failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
