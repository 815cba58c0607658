"""Partial inflate (stop at the last needed item) gives exactly what full inflate gives."""
import numpy as np
import pytest

import data_files as df
from bwloader_core import BigWigCollection
from bwloader_core.batch_processor import BatchProcessor
from bwloader_core.device import Device

pytest.importorskip("zlib_ng")


@pytest.mark.parametrize("name", [n for n in df.FIXTURE_NAMES if n != "uncompressed"])
def test_partial_equals_full(bw_files, name):
    f = bw_files[name]
    with BigWigCollection([f.path]) as coll:
        full = BatchProcessor(coll, n_threads=1, device=Device.cpu(partial_inflate=False))
        part = BatchProcessor(coll, n_threads=2)
        rng = np.random.default_rng(21)
        for length, window in ((1, 1), (300, 1), (2000, 10), (9000, 3)):
            chroms, starts, ends = df.random_queries(f, rng, length, 48)
            a = full.process(chroms, starts, ends, window_size=window, default_value=np.nan)
            b = part.process(chroms, starts, ends, window_size=window, default_value=np.nan)
            np.testing.assert_array_equal(a, b, err_msg=f"{name} length {length}")
            np.testing.assert_array_equal(b[..., 0] if window == 1 else b[:1, :0, 0],
                                          df.oracle_batch(f, chroms, starts, ends).astype(np.float32)
                                          if window == 1 else b[:1, :0, 0])
        full.close()
        part.close()
