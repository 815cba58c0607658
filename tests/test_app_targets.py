"""The dashboard with strand pairs, value transforms and a region mixture (models, and the
Training-targets card of the query view), on a real demo collection with RNA plus/minus tracks."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("param")

from bwloader_app.plot_data import sample_view  # noqa: E402
from bwloader_app.state import DashboardState  # noqa: E402
from bwloader_core import BigWigCollection  # noqa: E402
from bwloader_core.demo import write_demo_collection  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

CHROMS = {"chr1": 300_000, "chr2": 200_000}
PLUS, MINUS = "RNA_plus_rep1", "RNA_minus_rep1"

CONFIG = """\
sequence_length: 1000
window_size: 10
reduce: sum
batch_size: 32
reverse_complement: true
strand_pairs:
- [RNA_plus_rep1, RNA_minus_rep1]
value_transforms:
- {step: power, exponent: 0.75, threshold: -1}
- {step: soft_clip, threshold: 50}
regions:
  peaks: {regions: demo/peaks.bed, weight: 0.25}
  background: {regions: all, exclude: demo/blacklist.bed, weight: 0.75}
"""


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash_targets")
    write_demo_collection(root / "demo", n_tracks=8, chrom_sizes=CHROMS, seed=2)
    (root / "demo" / "peaks.bed").write_text("chr1\t100000\t120000\nchr2\t5000\t9000\n")
    (root / "demo" / "blacklist.bed").write_text("chr1\t0\t50000\n")
    return root


@pytest.fixture
def state(data_root):
    s = DashboardState(data_root)
    yield s
    s.close()


def test_uploaded_targets_config_streams_and_shows_the_mix(state, data_root):
    assert state.load_yaml(CONFIG, "borzoi.yaml"), state.upload_error
    c = state.config
    assert c.strand_pairs == [[PLUS, MINUS]] and len(c.value_transforms) == 2
    assert state.regions_summary == ("mixture: peaks 25% (BED peaks.bed), "
                                     "background 75% (all chromosomes minus exclude)")
    assert "strand_pairs" in state.to_yaml() and "peaks" in state.to_yaml()
    state.step()
    assert state.stream.wait(60)
    state.poll()
    b = state.stream.batch
    assert b is not None and b.region_source_names == ("peaks", "background")
    assert (b.region_source == 0).sum() == 8
    names = list(b.track_names)
    p, m = names.index(PLUS), names.index(MINUS)
    assert b.strand_partners[p] == m
    # the sample view draws an RC sample in genome orientation: strands swapped back, too
    rc = np.flatnonzero(b.reverse_complement)
    assert rc.size
    with BigWigCollection(c.bigwig_paths) as coll:
        from bwloader_core.transforms import apply_transforms
        ref = apply_transforms(coll.get_batch(b.chromosomes, b.target_starts, b.target_ends, window_size=10,
                                              reduce="sum", tracks=b.track_indices), c.value_transforms)
    differ = 0
    for i in rc:
        v = sample_view(b, int(i), max_points=10_000)
        assert v["source"] in ("peaks", "background")
        np.testing.assert_array_equal(v["curves"][PLUS][1], ref[i, :, p])
        np.testing.assert_array_equal(v["curves"][MINUS][1], ref[i, :, m])
        differ += not np.array_equal(ref[i, :, p], ref[i, :, m])
    assert differ, "no RC sample with different strands: the check above would not see a swap"


def test_changing_tracks_keeps_an_uploaded_mixture(state):
    assert state.load_yaml(CONFIG, "borzoi.yaml"), state.upload_error
    mix = dict(state.config.regions)
    state.browser.tracks = list(state.browser.tracks)[:6]
    assert state.config.regions == mix
    state.chromosomes = ["chr2"]                       # an explicit pick replaces it
    assert state.config.regions == [["chr2", 0, CHROMS["chr2"]]]


@pytest.mark.parametrize("text, expect", [
    ("regions:\n  peaks: {regions: ../../x.bed}\n", "outside the data root"),
    ("regions:\n  bg: {regions: all, exclude: /etc/hostname}\n", "outside the data root"),
    ("regions:\n  peaks: {regions: all, wieght: 2}\n", "did you mean 'weight'"),
    ("strand_pairs: [[a, a]]\n", "paired with itself"),
    ("value_transforms: [{step: sqrt}]\n", "unknown step 'sqrt'"),
])
def test_bad_targets_upload_is_a_readable_message(state, text, expect):
    before = state.to_yaml()
    assert not state.load_yaml(text, "bad.yaml")
    assert expect in state.upload_error and state.upload_error.startswith("bad.yaml")
    assert state.to_yaml() == before


def test_query_view_has_the_training_targets_card(state):
    pn = pytest.importorskip("panel")
    from bwloader_app.views import QueryView, _targets_summary
    view = QueryView(state=state)
    group = view.groups["Training targets (Python literals)"]
    assert {"strand_pairs", "value_transforms"} <= set(group.parameters)
    text = _targets_summary([{"step": "log1p"}, {"step": "clip", "max": 5}], [[PLUS, MINUS]]).object
    assert "log1p -> clip(max=5)" in text and f"{PLUS}/{MINUS}" in text
    assert "unknown step" in _targets_summary([{"step": "nope"}], None).object
    assert isinstance(view.__panel__(), pn.Column)
