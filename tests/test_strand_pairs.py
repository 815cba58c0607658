"""Strand pairs: reverse-complemented samples swap paired columns; errors; track sampling keeps
pairs together; YAML round trip."""
from __future__ import annotations

import numpy as np
import pytest

from bwloader_core import BigWigCollection
from bwloader_core.config import LoaderConfig, LoaderConfigError
from bwloader_core.demo import write_demo_collection
from bwloader_core.sampling import PairedRandomTracks, QueryBatchGenerator, StrandPairs
from bwloader_core.streamed import StreamedDataloader

PLUS, MINUS = "RNA_plus_rep1", "RNA_minus_rep1"
NAMES = ["H3K27ac_rep1", "H3K4me3_rep1", "CTCF_rep1", "ATAC_rep1", PLUS, MINUS, "H3K4me1_rep1", "POLR2A_rep1"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo collection (RNA_plus_rep1 / RNA_minus_rep1 among 8 tracks), on small chromosomes."""
    return write_demo_collection(tmp_path_factory.mktemp("strand_demo"), n_tracks=8,
                                 chrom_sizes={"chr1": 400_000, "chr2": 250_000}, seed=3)


def _reference(coll, batch, window_size=1, reduce="mean"):
    return coll.get_batch(batch.chromosomes, batch.target_starts, batch.target_ends, window_size=window_size,
                          reduce=reduce, tracks=batch.track_indices)


@pytest.mark.parametrize("pairs", [[[PLUS, MINUS]], {PLUS: MINUS}, {PLUS: MINUS, MINUS: PLUS}])
def test_rc_sample_plus_column_is_the_reversed_minus_track(demo, pairs):
    cfg = LoaderConfig(bigwig_paths=demo["paths"], sequence_length=2048, center_bin_to_predict=1024,
                       window_size=8, reduce="sum", batch_size=16, batches_per_epoch=6, reverse_complement=True,
                       strand_pairs=pairs, seed=4, num_workers=2)
    ds = cfg.build()
    names = list(ds.track_names)
    p, m = names.index(PLUS), names.index(MINUS)
    n_rc = n_differs = 0
    with BigWigCollection(demo["paths"]) as coll:
        for batch in ds:
            ref = _reference(coll, batch, 8, "sum")
            assert batch.strand_partners.tolist() == [0, 1, 2, 3, 5, 4, 6, 7]
            for i, rc in enumerate(batch.reverse_complement):
                if not rc:
                    np.testing.assert_array_equal(batch.values[i], ref[i])
                    continue
                n_rc += 1
                np.testing.assert_array_equal(batch.values[i, :, p], ref[i, ::-1, m])
                np.testing.assert_array_equal(batch.values[i, :, m], ref[i, ::-1, p])
                others = [t for t in range(len(names)) if t not in (p, m)]
                np.testing.assert_array_equal(batch.values[i][:, others], ref[i, ::-1][:, others])
                n_differs += not np.array_equal(ref[i, :, p], ref[i, :, m])
    ds.close()
    assert n_rc > 10
    assert n_differs > 0, "no RC sample had different plus and minus signal: the test would not see a swap"


def test_without_pairs_columns_are_not_swapped(demo):
    with BigWigCollection(demo["paths"]) as coll:
        gen = QueryBatchGenerator(coll.chrom_sizes, coll.track_names, sequence_length=1000, batch_size=16,
                                  batches_per_epoch=3, reverse_complement=True, seed=1)
        for batch in StreamedDataloader(iter(list(gen)), coll, num_workers=1):
            assert batch.strand_partners is None
            ref = _reference(coll, batch)
            rc = batch.reverse_complement
            np.testing.assert_array_equal(batch.values[rc], ref[rc, ::-1])


def test_pairs_with_a_fixed_track_list_follow_its_column_order(demo):
    with BigWigCollection(demo["paths"]) as coll:
        gen = QueryBatchGenerator(coll.chrom_sizes, coll.track_names, sequence_length=1000, batch_size=16,
                                  batches_per_epoch=2, reverse_complement=True, seed=1,
                                  tracks=[MINUS, "ATAC_rep1", PLUS], strand_pairs=[[PLUS, MINUS]])
        for batch in StreamedDataloader(iter(list(gen)), coll, num_workers=1):
            assert batch.track_names == (MINUS, "ATAC_rep1", PLUS)
            assert batch.strand_partners.tolist() == [2, 1, 0]
            ref = _reference(coll, batch)
            rc = batch.reverse_complement
            assert rc.any()
            np.testing.assert_array_equal(batch.values[rc], ref[rc, ::-1][:, :, [2, 1, 0]])


# -- errors ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pairs, message", [
    ([[PLUS, PLUS]], "paired with itself"),
    ({PLUS: PLUS}, "paired with itself"),
    ([["RNA_plus", MINUS]], "unknown track 'RNA_plus'.*did you mean 'RNA_plus_rep1'"),
    ([[PLUS, MINUS], [PLUS, "ATAC_rep1"]], "paired twice"),
    ([[PLUS]], "a pair is two track names"),
    ([PLUS], "a pair is two track names"),
    ("RNA_plus_rep1", "must be a list"),
    ([[PLUS, 3]], "named by a string"),
])
def test_bad_pairs_are_refused_clearly(pairs, message):
    with pytest.raises(ValueError, match=message):
        StrandPairs.parse(pairs, NAMES)


def test_bad_pairs_in_a_config(demo, tmp_path):
    with pytest.raises(LoaderConfigError, match="paired with itself"):
        LoaderConfig.from_yaml("strand_pairs: [[a, a]]")
    cfg = LoaderConfig(bigwig_paths=demo["paths"], strand_pairs=[["RNA_plus", MINUS]])
    with pytest.raises(ValueError, match="did you mean 'RNA_plus_rep1'"):
        cfg.build()


def test_a_selection_that_splits_a_pair_is_refused(demo):
    sizes = {"chr1": 400_000}
    with pytest.raises(ValueError, match="'RNA_plus_rep1' is strand-paired with 'RNA_minus_rep1'.*select both"):
        QueryBatchGenerator(sizes, NAMES, tracks=[PLUS, "ATAC_rep1"], strand_pairs=[[PLUS, MINUS]])
    with pytest.raises(ValueError, match=r"tracks\[1\]"):
        QueryBatchGenerator(sizes, NAMES, tracks=[[PLUS, MINUS], [MINUS]], strand_pairs=[[PLUS, MINUS]])
    # a callable is only known per batch: refused at the batch that splits the pair
    gen = QueryBatchGenerator(sizes, NAMES, batches_per_epoch=3, strand_pairs=[[PLUS, MINUS]],
                              tracks=lambda rng, i: [PLUS, MINUS] if i < 1 else [MINUS, "CTCF_rep1"])
    gen.batch(0)
    with pytest.raises(ValueError, match="batch 1 of epoch 0.*select both"):
        gen.batch(1)


# -- k random tracks ----------------------------------------------------------------------------------
def test_k_random_tracks_keep_pairs_together_uniformly():
    """Uniform over selections closed under pairing: with 8 tracks, one pair and k=3, C(6,1)=6 of
    the C(6,1) + C(6,3) = 26 selections hold the pair."""
    gen = QueryBatchGenerator({"chr1": 100_000}, NAMES, sequence_length=100, batch_size=2,
                              batches_per_epoch=4000, tracks=3, strand_pairs=[[PLUS, MINUS]], seed=9)
    assert isinstance(gen.track_sampler, PairedRandomTracks)
    with_pair, seen = 0, np.zeros(len(NAMES), int)
    p, m = NAMES.index(PLUS), NAMES.index(MINUS)
    for i in range(len(gen)):
        tracks = gen.track_sampler(np.random.default_rng([9, 0, i]), i)
        assert len(tracks) == 3 and len(set(tracks.tolist())) == 3 and np.all(np.diff(tracks) > 0)
        assert (p in tracks) == (m in tracks)
        with_pair += p in tracks
        seen[tracks] += 1
    n, prob = len(gen), 6 / 26
    sd = np.sqrt(n * prob * (1 - prob))
    assert abs(with_pair - n * prob) < 4.5 * sd
    assert (seen > 0).all()
    # batches carry the partner columns of whatever was drawn
    for i in range(50):
        b = gen.batch(i)
        cols = b.strand_partners
        assert sorted(cols.tolist()) == list(range(3))
        for j, t in enumerate(b.track_indices.tolist()):
            partner = {p: m, m: p}.get(t, t)
            assert b.track_indices[cols[j]] == partner


def test_k_random_tracks_impossible_with_pairs_is_refused_up_front():
    names = ["a+", "a-", "b+", "b-"]
    with pytest.raises(ValueError, match="tracks=3: cannot draw 3 tracks.*choose an even k"):
        QueryBatchGenerator({"chr1": 10_000}, names, sequence_length=100, tracks=3,
                            strand_pairs=[["a+", "a-"], ["b+", "b-"]])
    gen = QueryBatchGenerator({"chr1": 10_000}, names, sequence_length=100, tracks=2, batches_per_epoch=20,
                              strand_pairs=[["a+", "a-"], ["b+", "b-"]])
    assert {tuple(gen.batch(i).track_indices.tolist()) for i in range(20)} == {(0, 1), (2, 3)}


# -- YAML -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pairs", [[[PLUS, MINUS], ["a", "b"]], {PLUS: MINUS}])
def test_yaml_round_trip(pairs, tmp_path):
    cfg = LoaderConfig(strand_pairs=pairs, reverse_complement=True)
    path = tmp_path / "c.yaml"
    cfg.to_yaml(path)
    assert "strand_pairs" in path.read_text()
    assert LoaderConfig.from_yaml(path).strand_pairs == pairs
