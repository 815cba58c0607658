"""Weighted region mixtures: per-batch proportions, determinism, membership, errors, YAML, Batch."""
from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import stream_data  # noqa: E402

from bwloader_core.config import LoaderConfig, LoaderConfigError  # noqa: E402
from bwloader_core.sampling import (  # noqa: E402
    QueryBatchGenerator,
    RegionSource,
    load_regions,
    positions_in_regions,
)
from bwloader_core.sampling.mixture import MixtureCounts  # noqa: E402

SIZES = {"chr1": 1_000_000, "chr2": 600_000, "chr3": 300_000}
TRACKS = ["t0", "t1"]
PEAKS = [("chr1", 10_000, 12_000), ("chr1", 500_000, 501_000), ("chr2", 42_000, 44_000), ("chr3", 7_000, 8_000)]
BLACKLIST = [("chr1", 0, 400_000), ("chr3", 0, 300_000)]


def mixture(w_peaks=0.5, w_bg=0.5):
    return {"peaks": {"regions": PEAKS, "weight": w_peaks},
            "background": {"regions": "all", "exclude": BLACKLIST, "weight": w_bg}}


def make(regions, **kw):
    kw = {"sequence_length": 200, "batch_size": 32, "batches_per_epoch": 400, "seed": 5, **kw}
    return QueryBatchGenerator(SIZES, TRACKS, regions=regions, **kw)


def centres(qb):
    return qb.starts + 100


# -- proportions --------------------------------------------------------------------------------------
@pytest.mark.parametrize("weights", [(0.5, 0.5), (0.3, 0.7), (1.0, 3.0), (0.05, 0.95)])
def test_counts_per_batch_and_over_many_batches(weights):
    gen = make(mixture(*weights))
    f = weights[0] / sum(weights)
    n = gen.batch_size
    counts = []
    for qb in gen:
        assert qb.region_source_names == ("peaks", "background")
        k = int((qb.region_source == 0).sum())
        assert k in (np.floor(n * f), np.ceil(n * f))       # never more than one from n * f
        counts.append(k)
    total, draws = sum(counts), n * len(counts)
    sd = np.sqrt(draws * f * (1 - f))                      # binomial bound (the scheme is far tighter)
    assert abs(total - draws * f) < 4 * sd
    if n * f == int(n * f):
        assert set(counts) == {int(n * f)}                 # exact every batch


def test_three_sources_and_a_zero_weight_source():
    regions = {"a": {"regions": PEAKS[:2], "weight": 1}, "b": {"regions": PEAKS[2:], "weight": 2},
               "off": {"regions": "all", "weight": 0}, "c": {"regions": [("chr2", 100_000, 300_000)]}}
    gen = make(regions, batch_size=10, batches_per_epoch=600)
    got = np.zeros(4)
    for qb in gen:
        got += np.bincount(qb.region_source, minlength=4)
    assert got[2] == 0
    np.testing.assert_allclose(got[[0, 1, 3]] / got.sum(), [0.25, 0.5, 0.25], atol=0.01)


def test_mixture_counts_expectation_is_exact():
    mc = MixtureCounts([0.3, 0.7], 32)
    assert mc.base.tolist() == [9, 22] and mc.leftover == 1
    rng = np.random.default_rng(0)
    c = np.array([mc(rng) for _ in range(20000)])
    assert (c.sum(axis=1) == 32).all()
    assert abs(c[:, 0].mean() - 9.6) < 0.02


# -- where samples come from ------------------------------------------------------------------------------
def test_each_sample_lies_in_its_source_and_out_of_the_exclusions():
    gen = make(mixture(), exclude=[("chr2", 0, 100_000)], batches_per_epoch=60)
    peaks = load_regions(PEAKS, SIZES)
    black = load_regions(BLACKLIST, SIZES)
    glob_excl = load_regions([("chr2", 0, 100_000)], SIZES)
    names = np.asarray(list(SIZES))
    for qb in gen:
        ids = np.array([list(SIZES).index(c) for c in qb.chromosomes], dtype=np.int64)
        c = centres(qb)
        in_peaks = positions_in_regions(peaks, ids, c)
        from_peaks = qb.region_source == 0
        assert in_peaks[from_peaks].all()
        assert not positions_in_regions(black, ids, c)[~from_peaks].any()
        assert not positions_in_regions(glob_excl, ids, c).any()   # the global exclude covers every source
        assert set(names[ids]) <= set(SIZES)


def test_samples_are_shuffled_within_a_batch():
    gen = make(mixture())
    firsts = {int(gen.batch(i).region_source[0]) for i in range(20)}
    assert firsts == {0, 1}


# -- determinism -----------------------------------------------------------------------------------
def test_deterministic_from_seed_epoch_and_batch():
    a, b = make(mixture()), make(mixture())
    for i in (0, 7, 399):
        x, y = a.batch(i, epoch=2), b.batch(i, epoch=2)
        np.testing.assert_array_equal(x.starts, y.starts)
        np.testing.assert_array_equal(x.region_source, y.region_source)
        assert x.chromosomes.tolist() == y.chromosomes.tolist()
    assert not np.array_equal(a.batch(3, epoch=0).starts, a.batch(3, epoch=1).starts)
    assert not np.array_equal(a.batch(3).starts, make(mixture(), seed=6).batch(3).starts)
    # from threads, in any order
    out = {}

    def work(idx):
        for i in idx:
            out[i] = a.batch(i, epoch=2)
    threads = [threading.Thread(target=work, args=(list(range(k, 40, 4)),)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(40):
        ref = b.batch(i, epoch=2)
        np.testing.assert_array_equal(out[i].starts, ref.starts)
        np.testing.assert_array_equal(out[i].region_source, ref.region_source)


def test_shards_of_a_mixture_are_disjoint_batches_of_the_same_stream():
    full = make(mixture(), batches_per_epoch=40, rank=0, world_size=1)
    for r in range(2):
        shard = make(mixture(), batches_per_epoch=40, rank=r, world_size=2)
        for i in range(len(shard)):
            np.testing.assert_array_equal(shard.batch(i).starts, full.batch(2 * i + r).starts)


# -- old forms keep working ----------------------------------------------------------------------------
def test_old_region_forms_are_unchanged_and_report_one_source(tmp_path):
    bed = tmp_path / "r.bed"
    bed.write_text("".join(f"{c}\t{s}\t{e}\n" for c, s, e in PEAKS))
    for spec in (None, "all", str(bed), PEAKS):
        gen = make(spec, batches_per_epoch=3)
        qb = gen.batch(0)
        assert qb.region_source_names == ("regions",)
        assert (qb.region_source == 0).all()
    # the draws of a plain regions set are those from before mixtures existed (pinned values)
    qb = make(None, batches_per_epoch=3, seed=0, reverse_complement=True, tracks=1, jitter=5).batch(2)
    assert qb.starts[:6].tolist() == [182651, 783571, 727484, 582663, 855573, 132031]
    assert qb.chromosomes[:6].tolist() == ["chr2", "chr1", "chr1", "chr1", "chr1", "chr2"]
    assert qb.reverse_complement[:6].tolist() == [True, False, False, False, True, False]
    assert qb.track_indices.tolist() == [0]
    single = make({"only": {"regions": PEAKS}}, batches_per_epoch=3).batch(0)
    assert single.region_source_names == ("only",)


# -- errors ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, message", [
    ({"peaks": {"regions": PEAKS, "wieght": 1}}, "unknown key 'wieght'.*did you mean 'weight'"),
    ({"peaks": {"regions": PEAKS, "weight": -1}}, "weight must be a finite number >= 0"),
    ({"peaks": {"regions": PEAKS, "weight": "half"}}, "weight must be a finite number"),
    ({"peaks": {"regions": PEAKS, "weight": 0}}, "add up to 0"),
    ({}, "names no source"),
    ([RegionSource("a", PEAKS), RegionSource("a", "all")], "used twice: a"),
])
def test_bad_mixtures_are_refused_clearly(spec, message):
    with pytest.raises(ValueError, match=message):
        make(spec)


def test_a_source_with_nothing_left_is_named():
    with pytest.raises(ValueError, match="source 'peaks'.*no region is left"):
        make({"peaks": {"regions": PEAKS[:1], "exclude": [("chr1", 0, 20_000)]}, "bg": "all"})
    with pytest.raises(ValueError, match="source 'peaks'.*not in the bigWig chromosome list"):
        make({"peaks": {"regions": [("chrZ", 0, 100)]}, "bg": "all"})
    with pytest.raises(ValueError, match="custom positions"):
        QueryBatchGenerator(SIZES, TRACKS, regions=mixture(), positions=[("chr1", 5000)])


# -- config, YAML, loader ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sdata(tmp_path_factory):
    return stream_data.write_stream_data(tmp_path_factory.mktemp("mixture_stream"), seed=4)


def test_yaml_round_trip_and_loader_batches_record_sources(sdata, tmp_path):
    bed = tmp_path / "peaks.bed"
    bed.write_text("chr1\t5000\t9000\nchr2\t1000\t3000\n")
    regions = {"peaks": {"regions": str(bed), "weight": 0.25},
               "background": {"regions": "all", "exclude": [["chr1", 0, 50_000]], "weight": 0.75}}
    cfg = LoaderConfig(bigwig_paths=sdata.bigwig_paths, reference_genome=sdata.fasta, regions=regions,
                       sequence_length=400, batch_size=16, batches_per_epoch=4, seed=3)
    path = tmp_path / "mix.yaml"
    cfg.to_yaml(path)
    back = LoaderConfig.from_yaml(path)
    assert back.regions == regions
    with cfg.build() as ds1, back.build() as ds2:
        for a, b in zip(ds1, ds2):
            np.testing.assert_array_equal(a.starts, b.starts)
            np.testing.assert_array_equal(a.region_source, b.region_source)
            assert a.region_source_names == ("peaks", "background")
            assert (a.region_source == 0).sum() == 4
            names = a.source_names()
            assert names.count("peaks") == 4 and names.count("background") == 12
            bg = a.region_source == 1
            assert not ((a.chromosomes[bg] == "chr1") & (a.starts[bg] + 200 < 50_000)).any()


def test_region_source_objects_export_as_a_mapping():
    cfg = LoaderConfig(regions=[RegionSource("peaks", [["chr1", 0, 10]], 2.0), RegionSource("bg", "all")])
    back = LoaderConfig.from_yaml(cfg.to_yaml())
    assert back.regions == {"peaks": {"regions": [["chr1", 0, 10]], "weight": 2.0}, "bg": {"regions": "all", "weight": 1.0}}


def test_bad_mixture_in_yaml_is_a_config_error():
    with pytest.raises(LoaderConfigError, match="did you mean 'weight'"):
        LoaderConfig.from_yaml("regions: {peaks: {regions: all, weigth: 2}}")


def test_mixture_with_the_unknown_base_filter_redraws_within_the_source(sdata):
    from bwloader_core.sequence import ReferenceGenome
    with ReferenceGenome(sdata.fasta) as genome:
        peaks = [("chr1", 0, 600)]   # chr1 starts with 100 N: windows starting there are redrawn
        gen = QueryBatchGenerator(sdata.chrom_sizes, TRACKS, sequence_length=300, batch_size=16,
                                  batches_per_epoch=10, regions={"peaks": {"regions": peaks}, "bg": "all"},
                                  max_unknown_fraction=0.0, genome=genome, seed=1)
        reg = load_regions(peaks, sdata.chrom_sizes)
        names = list(sdata.chrom_sizes)
        for qb in gen:
            ids = np.array([names.index(c) for c in qb.chromosomes], dtype=np.int64)
            assert positions_in_regions(reg, ids, qb.starts + 150)[qb.region_source == 0].all()
            assert (qb.region_source == 0).sum() == 8
            assert qb.sequence_codes is not None
            codes = qb.sequence_codes
            assert np.isin(codes, np.frombuffer(b"ACGTacgt", np.uint8)).all()


def test_torch_dicts_carry_sources_and_strand_partners(sdata):
    pytest.importorskip("torch")
    from bwloader_core.torch import TorchBigWigDataset
    cfg = LoaderConfig(bigwig_paths=sdata.bigwig_paths, sequence_length=400, batch_size=8, batches_per_epoch=2,
                       regions={"a": {"regions": [["chr1", 0, 50_000]]}, "b": "all"},
                       strand_pairs=[["track0", "track1"]], reverse_complement=True)
    ds = TorchBigWigDataset.from_config(cfg)
    try:
        d = next(iter(ds))
        assert d["region_source_names"] == ["a", "b"] and d["region_source"].tolist().count(0) == 4
        assert d["strand_partners"].tolist() == [1, 0, 2]
    finally:
        ds.close()
