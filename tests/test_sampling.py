"""Regions, samplers and the QueryBatchGenerator."""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bwloader_core.sampling import (
    ArrayPositions,
    QueryBatchGenerator,
    RegionSampler,
    Regions,
    load_regions,
    make_track_sampler,
    subtract,
)
from bwloader_core.sequence import ReferenceGenome, unknown_fraction

CHROMS = {"chr1": 100_000, "chr2": 50_000, "chr3": 20_000, "chrM": 500}
TRACKS = [f"track{i}" for i in range(10)]


def batches_equal(a, b) -> bool:
    return (np.array_equal(a.chromosomes, b.chromosomes) and np.array_equal(a.starts, b.starts)
            and np.array_equal(a.ends, b.ends) and np.array_equal(a.track_indices, b.track_indices)
            and np.array_equal(a.reverse_complement, b.reverse_complement))


def coverage(regions_list, chrom_sizes) -> dict[str, np.ndarray]:
    """Reference: one boolean per base."""
    cov = {c: np.zeros(s, dtype=bool) for c, s in chrom_sizes.items()}
    for c, s, e in regions_list:
        cov[c][max(s, 0):max(min(e, chrom_sizes[c]), 0)] = True
    return cov


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(padded)
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def regions_from_coverage(cov) -> list[tuple[str, int, int]]:
    return [(c, s, e) for c, m in cov.items() for s, e in runs(m)]


# =================================================================================================
# regions
# =================================================================================================


def test_load_all_and_none():
    for spec in (None, "all", "ALL"):
        r = load_regions(spec, CHROMS)
        assert r.to_list() == [(c, 0, s) for c, s in CHROMS.items()]
        assert r.total_length == sum(CHROMS.values())


def test_bed_file_parsing_clipping_and_merging(tmp_path):
    bed = tmp_path / "regions.bed"
    bed.write_text(
        "browser position chr1:1-100\n"
        "track name=test\n"
        "# a comment\n"
        "\n"
        "chr2\t100\t200\tname\t0\t+\n"
        "chr1\t0\t1000\n"
        "chr1\t10\t20\n"          # contained: must not truncate
        "chr1\t500\t600\n"        # contained
        "chr1\t1000\t1500\n"      # book-ended: merges
        "chr1\t3000\t3100\n"
        "chr3\t19990\t30000\n"    # clipped to the chromosome end
        "chrM\t600\t700\n"        # entirely outside: dropped
        "chr1 5000 5100\n"        # whitespace-separated also accepted
    )
    r = load_regions(bed, CHROMS)
    assert r.to_list() == [("chr1", 0, 1500), ("chr1", 3000, 3100), ("chr1", 5000, 5100),
                           ("chr2", 100, 200), ("chr3", 19990, 20000)]
    assert r.starts.dtype == np.int64 and r.ends.dtype == np.int64
    assert list(r.chroms) == ["chr1", "chr1", "chr1", "chr2", "chr3"]
    assert load_regions(str(bed), CHROMS) == r


@pytest.mark.parametrize("line, message", [
    ("chr1\t100\n", "at least 3 columns"),
    ("chr1\tabc\t200\n", "must be integers"),
    ("chr1\t300\t200\n", "invalid interval"),
    ("chr1\t-5\t200\n", "invalid interval"),
])
def test_bed_malformed_lines_name_file_and_line(tmp_path, line, message):
    bed = tmp_path / "bad.bed"
    bed.write_text("# header\nchr1\t0\t10\n" + line)
    with pytest.raises(ValueError, match=f"bad.bed:3: .*{message}"):
        load_regions(bed, CHROMS)


def test_bed_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.bed"):
        load_regions(tmp_path / "nope.bed", CHROMS)


def test_dataframe_not_mutated_and_aliases():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"chrom": ["chr2", "chr1", "chr1", "chrM"], "start": [5, 100, 0, 400],
                       "end": [50, 200, 150, 900], "score": [1.0, 2.0, 3.0, 4.0]}, index=[7, 3, 5, 1])
    before = df.copy(deep=True)
    r = load_regions(df, CHROMS)
    assert r.to_list() == [("chr1", 0, 200), ("chr2", 5, 50), ("chrM", 400, 500)]
    pd.testing.assert_frame_equal(df, before)
    assert list(df.columns) == ["chrom", "start", "end", "score"]
    df2 = pd.DataFrame({"Chromosome": ["chr1"], "chromStart": [1], "chromEnd": [2]})
    assert load_regions(df2, CHROMS).to_list() == [("chr1", 1, 2)]
    with pytest.raises(ValueError, match="start column"):
        load_regions(pd.DataFrame({"chrom": ["chr1"], "begin_": [1], "end": [2]}), CHROMS)
    rt = load_regions(r.to_dataframe(), CHROMS)
    assert rt == r


def test_tuples_and_errors():
    r = load_regions([("chr1", 0, 100), ("chr1", 10, 20), ("chr1", 90, 150), ("chr2", 0, 10)], CHROMS)
    assert r.to_list() == [("chr1", 0, 150), ("chr2", 0, 10)]  # running max: (0,100)+(10,20)+(90,150)
    with pytest.raises(ValueError, match="end < start"):
        load_regions([("chr1", 10, 5)], CHROMS)
    with pytest.raises(ValueError, match=r"item 0 must be a \(chrom, start, end\)"):
        load_regions([("chr1", 10)], CHROMS)
    with pytest.raises(TypeError):
        load_regions(42, CHROMS)
    with pytest.raises(ValueError, match="chrom_sizes"):
        load_regions(None, {})


def test_unknown_chromosomes_error_or_drop():
    spec = [("chr1", 0, 10), ("1", 0, 10), ("chrUn_x", 5, 9), ("1", 20, 30)]
    with pytest.raises(ValueError) as info:
        load_regions(spec, CHROMS)
    assert "2 chromosome(s) not in the bigWig chromosome list: 1, chrUn_x" in str(info.value)
    assert "unknown_chroms='drop'" in str(info.value)
    assert load_regions(spec, CHROMS, unknown_chroms="drop").to_list() == [("chr1", 0, 10)]


def test_no_merge_across_chromosome_boundary():
    sizes = {"a": 100, "b": 100, "empty": 0, "c": 50}
    r = load_regions([("a", 50, 100), ("b", 0, 10), ("c", 0, 50)], sizes)
    assert r.to_list() == [("a", 50, 100), ("b", 0, 10), ("c", 0, 50)]
    s = subtract(r, [("b", 5, 6)])
    assert s.to_list() == [("a", 50, 100), ("b", 0, 5), ("b", 6, 10), ("c", 0, 50)]


def test_subtract_examples():
    r = load_regions([("chr1", 0, 1000), ("chr2", 0, 500), ("chr3", 100, 200)], CHROMS)
    ex = [("chr1", 100, 200), ("chr1", 150, 300), ("chr1", 900, 2000), ("chr2", 0, 500), ("chrZ", 0, 10)]
    out = subtract(r, ex)  # chromosomes unknown to the collection are ignored in blacklists
    assert out.to_list() == [("chr1", 0, 100), ("chr1", 300, 900), ("chr3", 100, 200)]
    assert r.subtract(None) is r


interval = st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(-20, 130), st.integers(0, 80))


@settings(max_examples=200, deadline=None)
@given(st.lists(interval, max_size=25), st.lists(interval, max_size=25))
def test_merge_and_subtract_match_base_coverage(raw_a, raw_b):
    sizes = {"a": 100, "b": 60, "c": 1}
    a = [(c, max(s, 0), max(s, 0) + ln) for c, s, ln in raw_a]
    b = [(c, max(s, 0), max(s, 0) + ln) for c, s, ln in raw_b]
    ra = load_regions(a, sizes)
    assert ra.to_list() == regions_from_coverage(coverage(a, sizes))
    cov_a, cov_b = coverage(a, sizes), coverage(b, sizes)
    expected = regions_from_coverage({c: cov_a[c] & ~cov_b[c] for c in sizes})
    assert subtract(ra, b).to_list() == expected
    assert subtract(ra, load_regions(b, sizes)).to_list() == expected


# =================================================================================================
# RegionSampler
# =================================================================================================


def test_sampler_reaches_every_base_including_first_and_last():
    sizes = {"x": 10, "y": 10}
    regions = load_regions([("x", 2, 3), ("x", 5, 7), ("y", 7, 10)], sizes)
    sampler = RegionSampler(regions, sequence_length=1)
    ids, centres = sampler.sample(np.random.default_rng(0), 20_000)
    got = set(zip(np.asarray(regions.chrom_names)[ids].tolist(), centres.tolist()))
    assert got == {("x", 2), ("x", 5), ("x", 6), ("y", 7), ("y", 8), ("y", 9)}
    counts = np.unique(ids * 100 + centres, return_counts=True)[1]
    assert counts.min() > 20_000 / 6 * 0.9  # each base equally likely


def test_single_region_sampling():
    regions = load_regions([("chr2", 1000, 1010)], CHROMS)
    sampler = RegionSampler(regions, sequence_length=100)
    ids, centres = sampler.sample(np.random.default_rng(1), 5000)
    assert set(ids.tolist()) == {1}
    assert centres.min() == 1000 and centres.max() == 1009


def test_uniform_over_regions_chi_square():
    regions = load_regions([("chr1", 1000, 11_000), ("chr1", 50_000, 52_000), ("chr2", 100, 30_100),
                            ("chr3", 5000, 5500), ("chrM", 100, 400)], CHROMS)
    L = 100
    sampler = RegionSampler(regions, sequence_length=L)
    n = 400_000
    ids, centres = sampler.sample(np.random.default_rng(2), n)
    # which region each centre fell in (the last region, chrM, included)
    which = np.full(n, -1)
    for k, (c, s, e) in enumerate(regions):
        cid = regions.chrom_names.index(c)
        which[(ids == cid) & (centres >= s) & (centres < e)] = k
    assert (which >= 0).all()
    lengths = regions.lengths.astype(float)
    expected = n * lengths / lengths.sum()
    observed = np.bincount(which, minlength=len(regions))
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < 30, (observed, expected)  # 4 dof; p ~ 1e-5
    # uniform within a region too: 10 equal bins of the first region
    first = centres[which == 0]
    hist = np.bincount((first - 1000) // 1000, minlength=10)
    exp = len(first) / 10
    assert ((hist - exp) ** 2 / exp).sum() < 40


def test_sampler_keeps_windows_inside_chromosome_and_regions():
    regions = load_regions(None, CHROMS)
    L, j = 1000, 37
    sampler = RegionSampler(regions, sequence_length=L, jitter=j)
    ids, centres = sampler.sample(np.random.default_rng(3), 100_000)
    sizes = regions.chrom_lengths[ids]
    assert (centres - L // 2 - j >= 0).all() and (centres - L // 2 + L + j <= sizes).all()
    # contain="window": windows inside the regions
    reg = load_regions([("chr1", 0, 3000), ("chr2", 10_000, 10_999), ("chr2", 20_000, 21_500)], CHROMS)
    s2 = RegionSampler(reg, sequence_length=L, jitter=10, contain="window")
    ids, centres = s2.sample(np.random.default_rng(4), 50_000)
    st_ = centres - L // 2
    inside = np.zeros(len(ids), dtype=bool)
    for c, s, e in reg:
        cid = reg.chrom_names.index(c)
        inside |= (ids == cid) & (st_ - 10 >= s) & (st_ + L + 10 <= e)
    assert inside.all()
    assert not ((ids == 1) & (centres < 15_000)).any()  # the 999-bp region cannot hold a window
    with pytest.raises(ValueError, match="no window of sequence_length=1000"):
        RegionSampler(load_regions([("chrM", 0, 500)], CHROMS), sequence_length=1000)
    with pytest.raises(ValueError, match="contain"):
        RegionSampler(reg, 10, contain="inside")


# =================================================================================================
# QueryBatchGenerator
# =================================================================================================


def make(**kw):
    args = dict(chrom_sizes=CHROMS, track_names=TRACKS, sequence_length=1000, batch_size=16, seed=3)
    args.update(kw)
    return QueryBatchGenerator(**args)


def test_batches_shapes_and_bounds():
    regions = [("chr1", 10_000, 20_000), ("chr2", 0, 50_000), ("chrM", 0, 500)]
    gen = make(regions=regions, center_bin_to_predict=200, window_size=8)
    assert len(gen) == gen.batches_per_epoch == (10_000 + 50_000 + 500) // 1000 // 16
    sizes = np.array([CHROMS[c] for c in CHROMS])
    reg = load_regions(regions, CHROMS)
    for b in gen:
        assert b.chromosomes.dtype.kind == "U" and b.starts.dtype == np.int64 and b.ends.dtype == np.int64
        assert (b.ends - b.starts == 1000).all()
        assert (b.target_ends - b.target_starts == 200).all()
        assert (b.target_starts - b.starts == 400).all()
        chrom_sizes = sizes[[list(CHROMS).index(c) for c in b.chromosomes]]
        assert (b.starts >= 0).all() and (b.ends <= chrom_sizes).all()
        centres = b.starts + 500
        ok = np.zeros(len(b), dtype=bool)
        for c, s, e in reg:
            ok |= (b.chromosomes == c) & (centres >= s) & (centres < e)
        assert ok.all()
        assert "chrM" not in set(b.chromosomes)  # no 1-kb window fits chrM
        np.testing.assert_array_equal(b.track_indices, np.arange(10))
        assert b.track_names == tuple(TRACKS)
        assert not b.reverse_complement.any()
        assert b.sequence_codes is None


def test_exclusion_respected(tmp_path):
    exclude = tmp_path / "blacklist.bed"
    exclude.write_text("chr1\t0\t90000\nchr2\t0\t50000\nchrUn\t0\t5\n")
    gen = make(regions=None, exclude=exclude, batches_per_epoch=50)
    chroms = np.concatenate([b.chromosomes for b in gen])
    centres = np.concatenate([b.starts + 500 for b in gen])
    assert set(chroms.tolist()) <= {"chr1", "chr3"}
    assert (centres[chroms == "chr1"] >= 90_000).all()
    with pytest.raises(ValueError, match="no region is left"):
        make(regions=[("chr2", 0, 100)], exclude=[("chr2", 0, 1000)])


def test_determinism_across_instances_and_threads():
    kw = dict(regions=None, jitter=20, reverse_complement=True, tracks=3, batches_per_epoch=40)
    a, b = make(**kw), make(**kw)
    a.set_epoch(5)
    b.set_epoch(5)
    list_a, list_b = list(a), list(b)
    assert len(list_a) == 40 and all(batches_equal(x, y) for x, y in zip(list_a, list_b))
    assert all(x.epoch == 5 and x.index == i for i, x in enumerate(list_a))
    # any number of consumer threads, any order
    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(lambda i: b.batch(39 - i, epoch=5), range(40)))[::-1]
    assert all(batches_equal(x, y) for x, y in zip(list_a, threaded))
    # a different epoch or seed gives different queries
    a.set_epoch(6)
    assert not any(batches_equal(x, y) for x, y in zip(list_a, list(a)))
    c = make(**{**kw, "seed": 4})
    c.set_epoch(5)
    assert not any(batches_equal(x, y) for x, y in zip(list_a, list(c)))
    # iterating twice without set_epoch repeats the epoch
    a.set_epoch(5)
    assert all(batches_equal(x, y) for x, y in zip(list_a, list(a)))


@pytest.mark.parametrize("world_size", [2, 3])
def test_sharding_disjoint_equal_counts(world_size):
    kw = dict(regions=None, batches_per_epoch=31, tracks=2, reverse_complement=True)
    single = list(make(rank=0, world_size=1, **kw))
    shards = [list(make(rank=r, world_size=world_size, **kw)) for r in range(world_size)]
    per_rank = 31 // world_size
    assert all(len(s) == per_rank for s in shards)
    assert all(len(make(rank=r, world_size=world_size, **kw)) == per_rank for r in range(world_size))
    seen = [b.global_index for s in shards for b in s]
    assert len(seen) == len(set(seen)) == per_rank * world_size
    assert sorted(seen) == list(range(per_rank * world_size))
    for r, s in enumerate(shards):
        assert [b.index for b in s] == list(range(per_rank))
        for b in s:
            assert b.global_index % world_size == r
            # the same global batch as a single-process run: the stream does not depend on world_size
            assert batches_equal(b, single[b.global_index])
    # no rank repeats another rank's batch
    keys = {(tuple(b.chromosomes.tolist()), tuple(b.starts.tolist())) for s in shards for b in s}
    assert len(keys) == per_rank * world_size


def test_rank_world_size_validation():
    with pytest.raises(ValueError, match="rank \\(2\\) must be < world_size \\(2\\)"):
        make(rank=2, world_size=2)
    with pytest.raises(ValueError, match="both rank and world_size"):
        make(rank=1)
    with pytest.raises(ValueError, match="world_size"):
        make(world_size=4, rank=0, batches_per_epoch=3)
    gen = make()  # torch.distributed not initialised (or not imported): single process
    assert (gen.rank, gen.world_size) == (0, 1)
    # default batches_per_epoch gives every rank at least one batch
    assert len(make(regions=[("chr3", 0, 2000)], rank=1, world_size=4)) == 1


def test_jitter_bounds_and_rc_fraction():
    positions = [("chr1", 50_000)] * 64
    gen = make(positions=positions, jitter=7, batch_size=64, batches_per_epoch=50, reverse_complement=True)
    shifts = np.concatenate([b.starts - (50_000 - 500) for b in gen])
    assert shifts.min() == -7 and shifts.max() == 7
    assert len(np.unique(shifts)) == 15
    rc = np.concatenate([b.reverse_complement for b in gen])
    assert rc.dtype == bool and abs(rc.mean() - 0.5) < 0.05
    # jitter near a chromosome end never leaves the chromosome
    gen = make(positions=[("chrM", 250)] * 16, sequence_length=500, jitter=50, batches_per_epoch=5)
    for b in gen:
        assert (b.starts >= 0).all() and (b.ends <= 500).all()


def test_center_bin_validation():
    with pytest.raises(ValueError, match="multiple of window_size"):
        make(center_bin_to_predict=100, window_size=32)
    with pytest.raises(ValueError, match="<= sequence_length"):
        make(center_bin_to_predict=2000)
    with pytest.raises(ValueError, match="sequence_length \\(1000\\) must be a multiple of window_size"):
        make(window_size=3)
    gen = make(center_bin_to_predict=96, window_size=32, sequence_length=1001)
    b = gen.batch(0)
    assert (b.target_starts - b.starts == (1001 - 96) // 2).all() and b.target_length == 96


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
    (dict(batch_size=2.5), TypeError, "batch_size must be an integer"),
    (dict(sequence_length=-1), ValueError, "sequence_length"),
    (dict(jitter=-1), ValueError, "jitter"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(window_size=2000), ValueError, "window_size"),
    (dict(batches_per_epoch=0), ValueError, "batches_per_epoch"),
    (dict(reverse_complement="yes"), TypeError, "reverse_complement"),
    (dict(max_unknown_fraction=0.1), ValueError, "needs genome"),
    (dict(max_unknown_fraction=1.5, genome=object()), ValueError, "max_unknown_fraction"),
    (dict(tracks=["track1", "nope"]), ValueError, "unknown track name.*nope"),
    (dict(tracks=11), ValueError, "k=11"),
    (dict(tracks=0), ValueError, "tracks"),
    (dict(tracks=[3, 3]), ValueError, "twice"),
    (dict(regions=[("chrX", 0, 10)]), ValueError, "chrX"),
    (dict(chrom_sizes={}), ValueError, "chrom_sizes"),
    (dict(track_names=[]), ValueError, "track_names"),
    (dict(track_names=["a", "a"]), ValueError, "duplicates"),
    (dict(contain="both"), ValueError, "contain"),
])
def test_argument_validation(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        make(**kwargs)


def test_set_epoch_and_batch_index_validation():
    gen = make(batches_per_epoch=3)
    with pytest.raises(ValueError):
        gen.set_epoch(-1)
    with pytest.raises(IndexError):
        gen.batch(3)


def test_track_samplers():
    gen = make(tracks=4, batches_per_epoch=200)
    sets = [b.track_indices for b in gen]
    assert all(len(s) == 4 and len(np.unique(s)) == 4 and (np.diff(s) > 0).all() for s in sets)
    assert len({tuple(s) for s in sets}) > 50
    counts = np.bincount(np.concatenate(sets), minlength=10)
    assert counts.min() > 200 * 4 / 10 * 0.7
    b = make(tracks=["track7", "track2"]).batch(0)
    np.testing.assert_array_equal(b.track_indices, [7, 2])
    assert b.track_names == ("track7", "track2")
    np.testing.assert_array_equal(make(tracks=[9, 0]).batch(0).track_indices, [9, 0])
    np.testing.assert_array_equal(make(tracks="track5").batch(0).track_indices, [5])
    # a list of per-batch selections (indexed by global batch, cycling)
    gen = make(tracks=[["track1"], ["track2", "track3"], [0, 9]], batches_per_epoch=6)
    got = [b.track_indices.tolist() for b in gen]
    assert got == [[1], [2, 3], [0, 9]] * 2
    # a callable
    gen = make(tracks=lambda rng, i: [i % 10], batches_per_epoch=4)
    assert [b.track_indices.tolist() for b in gen] == [[0], [1], [2], [3]]
    # a one-shot iterable, read forward (one item per global batch; rank 1 of 2 skips the others)
    gen = make(tracks=(["track%d" % i] for i in range(100)), batches_per_epoch=6, rank=1, world_size=2)
    assert [b.track_names for b in gen] == [("track1",), ("track3",), ("track5",)]
    with pytest.raises(RuntimeError, match="forward"):
        gen.batch(0)
    sampler = make_track_sampler(None, TRACKS)
    np.testing.assert_array_equal(sampler(np.random.default_rng(0), 0), np.arange(10))


def test_custom_positions_list_dataframe_and_filters():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(8)
    centres = rng.integers(1000, 99_000, 96)
    positions = [("chr1", int(c)) for c in centres]
    gen = make(positions=positions, batch_size=16)
    assert len(gen) == 6
    seen = np.concatenate([b.starts + 500 for b in gen])
    assert sorted(seen.tolist()) == sorted(centres.tolist())  # each position once per epoch
    order0 = seen.copy()
    gen.set_epoch(1)
    order1 = np.concatenate([b.starts + 500 for b in gen])
    assert sorted(order1.tolist()) == sorted(order0.tolist()) and not np.array_equal(order0, order1)
    # DataFrame source, not mutated
    df = pd.DataFrame({"chrom": ["chr1", "chr2", "chr3"] * 8, "center": np.arange(24) * 10 + 5000})
    before = df.copy(deep=True)
    gen = make(positions=df, batch_size=8)
    assert len(gen) == 3
    pd.testing.assert_frame_equal(df, before)
    # regions / exclude filter the positions' centres
    gen = make(positions=positions, batch_size=4, regions=[("chr1", 0, 50_000)],
               exclude=[("chr1", 0, 20_000)])
    keep = (centres >= 20_000) & (centres < 50_000)
    assert len(gen) == keep.sum() // 4
    got = np.concatenate([b.starts + 500 for b in gen])
    assert ((got >= 20_000) & (got < 50_000)).all()
    # windows that leave the chromosome
    with pytest.raises(ValueError, match="do not fit inside their chromosome.*chrM:100"):
        make(positions=[("chrM", 100)] * 20)
    src = ArrayPositions(CHROMS, [("chrM", 100), ("chr1", 600)] * 8, 1000, out_of_bounds="drop")
    assert len(src) == 8
    with pytest.raises(ValueError, match="not in the bigWig chromosome list: chrX"):
        make(positions=[("chrX", 100)] * 20)
    with pytest.raises(ValueError, match="fewer than one batch"):
        make(positions=positions[:5])
    with pytest.raises(ValueError, match="pair"):
        make(positions=[("chr1", 600, 5)] * 20)


def test_streamed_positions():
    def stream():
        for i in range(1000):
            yield ("chr1", 1000 + i)

    gen = make(positions=stream(), batch_size=10, batches_per_epoch=4)
    got = [b.starts + 500 for b in gen]
    assert len(got) == 4 and np.array_equal(np.concatenate(got), np.arange(1000, 1040))
    got = [b.starts + 500 for b in gen]  # the next epoch continues the stream
    assert np.array_equal(np.concatenate(got), np.arange(1040, 1080))
    with pytest.raises(TypeError, match="iterated"):
        gen.batch(0)
    # two ranks reading the same stream keep disjoint batches
    r0 = [b.global_index for b in make(positions=stream(), batch_size=10, batches_per_epoch=4, rank=0, world_size=2)]
    r1 = [b for b in make(positions=stream(), batch_size=10, batches_per_epoch=4, rank=1, world_size=2)]
    assert r0 == [0, 2] and [b.global_index for b in r1] == [1, 3]
    assert np.array_equal(r1[0].starts + 500, np.arange(1010, 1020))
    # a finite generator without batches_per_epoch is read once into an array
    assert len(make(positions=stream(), batch_size=10)) == 100


# =================================================================================================
# unknown-base filter (real FASTA)
# =================================================================================================


@pytest.fixture(scope="module")
def n_genome(tmp_path_factory):
    """chr1: 20 kb, the first 15 kb N (except scattered bases); chr2: 5 kb all N; chr3: soft-masked."""
    rng = np.random.default_rng(9)
    chr1 = bytearray(rng.choice(np.frombuffer(b"ACGT", np.uint8), 20_000).tobytes())
    chr1[:15_000] = b"N" * 15_000
    chr1[5000:5010] = b"ACGTACGTAC"
    chr2 = b"N" * 5000
    chr3 = rng.choice(np.frombuffer(b"acgt", np.uint8), 8000).tobytes()
    path = tmp_path_factory.mktemp("ngenome") / "n.fa"
    with open(path, "wb") as fh:
        for name, seq in (("chr1", bytes(chr1)), ("chr2", chr2), ("chr3", chr3)):
            fh.write(b">" + name.encode() + b"\n")
            for i in range(0, len(seq), 70):
                fh.write(seq[i:i + 70] + b"\n")
    genome = ReferenceGenome(path)
    yield genome
    genome.close()


def test_unknown_filter_redraws(n_genome):
    sizes = dict(n_genome.chrom_sizes)
    gen = QueryBatchGenerator(sizes, ["t"], sequence_length=500, batch_size=32, batches_per_epoch=10,
                              max_unknown_fraction=0.1, genome=n_genome, jitter=3, seed=1)
    without = QueryBatchGenerator(sizes, ["t"], sequence_length=500, batch_size=32, batches_per_epoch=10,
                                  seed=1, jitter=3)
    frac_without = np.concatenate([
        unknown_fraction(n_genome.fetch_batch(b.chromosomes, b.starts, b.ends)) for b in without])
    assert (frac_without > 0.1).mean() > 0.3  # the filter has work to do
    chroms = []
    for b in gen:
        assert len(b) == 32
        codes = n_genome.fetch_batch(b.chromosomes, b.starts, b.ends)
        np.testing.assert_array_equal(b.sequence_codes, codes)
        assert (unknown_fraction(codes) <= 0.1).all()
        chroms.extend(b.chromosomes.tolist())
    assert "chr3" in chroms  # soft-masked bases are not unknown
    assert "chr2" not in chroms
    again = QueryBatchGenerator(sizes, ["t"], sequence_length=500, batch_size=32, batches_per_epoch=10,
                                max_unknown_fraction=0.1, genome=n_genome, jitter=3, seed=1)
    assert all(batches_equal(x, y) for x, y in zip(gen, again))


def test_unknown_filter_gives_up_with_clear_error(n_genome):
    sizes = dict(n_genome.chrom_sizes)
    gen = QueryBatchGenerator(sizes, ["t"], regions=[("chr2", 0, 5000)], sequence_length=100, batch_size=4,
                              max_unknown_fraction=0.5, genome=n_genome)
    with pytest.raises(RuntimeError, match="could not find 4 windows .* 0 of .* passed"):
        gen.batch(0)


def test_genome_must_hold_queried_chromosomes(n_genome):
    sizes = {**n_genome.chrom_sizes, "chr9": 10_000}
    with pytest.raises(ValueError, match="missing from the FASTA.*chr9"):
        QueryBatchGenerator(sizes, ["t"], sequence_length=100, max_unknown_fraction=0.1, genome=n_genome)
    gen = QueryBatchGenerator(sizes, ["t"], regions=[("chr3", 0, 8000)], sequence_length=100,
                              max_unknown_fraction=0.1, genome=n_genome)
    assert set(gen.batch(0).chromosomes.tolist()) == {"chr3"}


def test_unknown_filter_on_positions(n_genome):
    sizes = dict(n_genome.chrom_sizes)
    positions = [("chr1", 1000), ("chr1", 16_000), ("chr3", 4000), ("chr2", 2500), ("chr1", 18_000)] * 4
    gen = QueryBatchGenerator(sizes, ["t"], positions=positions, sequence_length=400, batch_size=4,
                              max_unknown_fraction=0.0, genome=n_genome, jitter=5)
    assert len(gen) == 3  # 12 clean positions
    for b in gen:
        assert (unknown_fraction(n_genome.fetch_batch(b.chromosomes, b.starts, b.ends)) == 0).all()


def test_regions_object_repr_and_types():
    r = load_regions([("chr1", 5, 1000)], CHROMS)
    assert isinstance(r, Regions) and "1 intervals" in repr(r)
    assert r.chrom_sizes == CHROMS
    gen = make(regions=r)
    assert "QueryBatchGenerator" in repr(gen)
    with pytest.raises(ValueError):
        r.starts[0] = 7  # shared arrays are read-only


def test_generator_pickles_for_worker_processes(n_genome):
    sizes = dict(n_genome.chrom_sizes)
    gen = QueryBatchGenerator(sizes, ["a", "b"], positions=[("chr3", 3000 + i) for i in range(40)], sequence_length=400,
                              batch_size=4, max_unknown_fraction=0.2, genome=n_genome, tracks=[["a"], ["b"]], jitter=2)
    clone = pickle.loads(pickle.dumps(gen))
    assert all(batches_equal(x, y) for x, y in zip(gen, clone))
    assert clone.genome.fetch("chr3", 0, 50) == n_genome.fetch("chr3", 0, 50)
    clone.genome.close()
    gen2 = make(tracks=3, exclude=[("chr1", 0, 5000)], batches_per_epoch=5)
    assert all(batches_equal(x, y) for x, y in zip(gen2, pickle.loads(pickle.dumps(gen2))))
