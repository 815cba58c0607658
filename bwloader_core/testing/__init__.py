"""Test support that ships with the package: the bigWig writer and the fixture files.

- `BigWigWriter` / `write_bigwig` (`bwloader_core.format.writer`): files whose every structural knob
  is under control (byte order, compression, section types, block and tree sizes);
- `bwloader_core.testing.fixtures`: the deterministic fixture collection the tests, the fuzzer and
  the benchmarks use, with pyBigWig as the oracle (needs the `dev` extra).
"""
from ..format.writer import BigWigWriter, write_bigwig

__all__ = ["BigWigWriter", "write_bigwig"]
