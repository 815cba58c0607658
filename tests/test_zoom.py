"""Windowed values from zoom levels: exact where zoom bins nest in the windows, close elsewhere."""
import numpy as np
import pytest

from bwloader_core import BigWigCollection
from bwloader_core.format.writer import BigWigWriter


@pytest.fixture(scope="module")
def zoomed(tmp_path_factory):
    p = str(tmp_path_factory.mktemp("zoom") / "z.bw")
    rng = np.random.default_rng(4)
    size = 400_000
    lens = rng.integers(5, 15, size // 8)
    ends = np.cumsum(lens)
    starts = ends - lens
    keep = (ends <= size) & (rng.random(len(ends)) > 0.1)
    vals = (rng.random(keep.sum()) * 4).astype(np.float32).round(2)
    with BigWigWriter(p, {"chr1": size}, zoom_levels=3) as w:
        w.add_bedgraph("chr1", starts[keep], ends[keep], vals)
    return p


def test_zoom_equals_exact_when_bins_nest(zoomed):
    with BigWigCollection([zoomed]) as c:
        # auto picks the coarsest level with reduction <= window: level 1 here
        red = c.files[0].zoom_levels[1].reduction_level
        assert c.files[0].zoom_levels[2].reduction_level > red * 2
        window = red * 2
        starts = np.arange(8) * red * 37
        for reduce in ("mean", "sum", "max", "min"):
            for default in (np.nan, 0.0):
                ex = c.get_batch(["chr1"] * 8, starts, starts + window * 20, window_size=window, reduce=reduce,
                                 default_value=default)
                zo = c.get_batch(["chr1"] * 8, starts, starts + window * 20, window_size=window, reduce=reduce,
                                 default_value=default, zoom=True)
                np.testing.assert_allclose(zo, ex, rtol=2e-5, err_msg=f"{reduce} {default}")


def test_zoom_is_close_when_bins_straddle_windows(zoomed):
    with BigWigCollection([zoomed]) as c:
        red = c.files[0].zoom_levels[0].reduction_level
        window = int(red * 2.5)
        starts = np.arange(8) * 1013 + 17
        ex = c.get_batch(["chr1"] * 8, starts, starts + window * 30, window_size=window, default_value=np.nan)
        zo = c.get_batch(["chr1"] * 8, starts, starts + window * 30, window_size=window, default_value=np.nan,
                         zoom=True)
        assert np.nanmean(np.abs(zo - ex) / np.abs(ex)) < 0.1


def test_zoom_falls_back_to_exact_for_narrow_windows(zoomed):
    with BigWigCollection([zoomed]) as c:
        ex = c.get_batch(["chr1"], [1000], [1600], window_size=3)
        zo = c.get_batch(["chr1"], [1000], [1600], window_size=3, zoom=True)
        np.testing.assert_array_equal(zo, ex)
        with pytest.raises(ValueError, match="no zoom level"):
            c.get_batch(["chr1"], [1000], [5000], window_size=1000, zoom=7)
