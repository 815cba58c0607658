"""Bad queries and bad configs: each is refused with the right exception type and a message that
says what is wrong (and, for names, what was probably meant); nothing is half-done.

`BigWigCollection.get_batch`: negative, reversed, zero-length, huge and non-integer coordinates,
unknown chromosomes and tracks, batches too large for memory. `LoaderConfig`: duplicate track
names, FASTA/bigWig chromosome mismatches, NaN/inf scaling, too-large batches.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import stream_data
from bwloader_core import BigWigCollection, LoaderConfig, LoaderConfigError


@pytest.fixture(scope="module")
def sdata(tmp_path_factory):
    return stream_data.write_stream_data(tmp_path_factory.mktemp("bad_queries"), seed=2)


@pytest.fixture(scope="module")
def coll(sdata):
    with BigWigCollection(sdata.bigwig_paths, n_threads=1) as c:
        yield c


def cfg(sdata, **kw):
    base = dict(bigwig_paths=list(sdata.bigwig_paths), sequence_length=500, batch_size=4, batches_per_epoch=3)
    base.update(kw)
    return LoaderConfig(**base)


# ------------------------------------------------------------------------------------ coordinates
def test_negative_coordinates_read_the_default_before_zero(coll):
    """Bases before 0 are outside the chromosome: the default value, like past the end."""
    v = coll.get_batch(["chr1"], [-10], [10], default_value=np.nan)
    assert v.shape == (1, 20, 3)
    assert np.isnan(v[0, :10]).all()
    np.testing.assert_array_equal(v[0, 10:], coll.get_batch(["chr1"], [0], [10], default_value=np.nan)[0])
    v = coll.get_batch(["chr1"], [-5000], [-4000], default_value=-1.0)
    assert (v == -1.0).all()


@pytest.mark.parametrize("start, end, what", [(10, 5, "-5"), (10, 10, "0"), (0, -3, "-3")])
def test_reversed_and_empty_queries_are_refused(coll, start, end, what):
    with pytest.raises(ValueError, match=r"end > start") as ei:
        coll.get_batch(["chr1"], [start], [end])
    assert f"length {what}" in str(ei.value)


@pytest.mark.parametrize("start, end, field", [(2**41, 2**41 + 10, "starts"), (0, 2**41, "ends"),
                                               (-2**41, 10, "starts"), (2**62, 2**62 + 5, "starts")])
def test_coordinates_beyond_2_40_are_refused(coll, start, end, field):
    with pytest.raises(ValueError) as ei:
        coll.get_batch(["chr1"], [start], [end])
    assert field in str(ei.value) and "2^40" in str(ei.value)


def test_uint64_coordinates_past_int64_are_refused(coll):
    with pytest.raises(ValueError, match="2\\^40|integers"):
        coll.get_batch(["chr1"], np.array([2**63], np.uint64), np.array([2**63 + 5], np.uint64))


@pytest.mark.parametrize("starts, ends, msg", [
    ([1.5], [11.5], "non-integer"),
    ([np.nan], [10], "non-integer"),
    ([np.inf], [10], "non-integer"),
    (["0"], ["10"], "dtype"),
    ([None], [10], "dtype"),
    ([True], [10], "dtype"),
    ([0], [10.25], "non-integer"),
])
def test_non_integer_coordinates_are_refused(coll, starts, ends, msg):
    with pytest.raises(ValueError, match=msg) as ei:
        coll.get_batch(["chr1"], starts, ends)
    assert "must be integers" in str(ei.value)


def test_integral_floats_are_accepted(coll):
    np.testing.assert_array_equal(coll.get_batch(["chr1"], [100.0], [200.0]), coll.get_batch(["chr1"], [100], [200]))


def test_unequal_lengths_and_counts_are_refused(coll):
    with pytest.raises(ValueError, match="same length") as ei:
        coll.get_batch(["chr1", "chr2"], [0, 10], [100, 50])
    assert "[40, 100]" in str(ei.value)
    with pytest.raises(ValueError, match="2 chromosomes for 1 starts"):
        coll.get_batch(["chr1", "chr2"], [0], [100])
    with pytest.raises(ValueError, match="1-D"):
        coll.get_batch(["chr1"], [[0]], [[100]])


def test_window_arguments_are_checked(coll):
    with pytest.raises(ValueError, match="window_size must be a positive integer, got 0"):
        coll.get_batch(["chr1"], [0], [100], window_size=0)
    with pytest.raises(ValueError, match="window_size must be a positive integer, got 2.0"):
        coll.get_batch(["chr1"], [0], [100], window_size=2.0)
    with pytest.raises(ValueError, match="shorter than window_size 200"):
        coll.get_batch(["chr1"], [0], [100], window_size=200)
    with pytest.raises(ValueError, match="reduce must be one of"):
        coll.get_batch(["chr1"], [0], [100], window_size=10, reduce="median")
    with pytest.raises(ValueError, match="int8"):
        coll.get_batch(["chr1"], [0], [100], dtype="int8")


def test_empty_batch_gives_an_empty_array(coll):
    v = coll.get_batch([], [], [])
    assert v.shape[0] == 0 and v.shape[2] == 3


# ------------------------------------------------------------------------------------ names
@pytest.mark.parametrize("name, hint", [("chr1_", "chr1"), ("Chr2", "chr2"), ("chr33", "chr3")])
def test_unknown_chromosome_suggests_the_nearest_name(coll, name, hint):
    with pytest.raises(KeyError) as ei:
        coll.get_batch([name], [0], [10])
    msg = str(ei.value)
    assert repr(name) in msg and f"did you mean {hint!r}" in msg
    assert "chr1" in msg and "chr2" in msg   # the known names are listed


def test_unknown_chromosome_without_a_close_name_lists_the_known_ones(coll):
    with pytest.raises(KeyError) as ei:
        coll.get_batch(["scaffold_123456"], [0], [10])
    assert "did you mean" not in str(ei.value) and "known: ['chr1', 'chr2', 'chr3']" in str(ei.value)


def test_unknown_chromosome_in_the_middle_of_a_batch(coll):
    with pytest.raises(KeyError, match="chrUn"):
        coll.get_batch(["chr1", "chr2", "chrUn", "chr1"], [0] * 4, [10] * 4)


def test_unknown_track_suggests_the_nearest_name(coll):
    with pytest.raises(KeyError) as ei:
        coll.get_batch(["chr1"], [0], [10], tracks=["trak0"])
    assert "'trak0'" in str(ei.value) and "did you mean 'track0'" in str(ei.value)
    with pytest.raises(IndexError, match="track index 7 out of range: the collection has 3 tracks"):
        coll.get_batch(["chr1"], [0], [10], tracks=[7])
    with pytest.raises(IndexError, match="track index -1"):
        coll.get_batch(["chr1"], [0], [10], tracks=[-1])
    with pytest.raises(ValueError, match="empty track selection"):
        coll.get_batch(["chr1"], [0], [10], tracks=[])
    with pytest.raises(TypeError, match="names or integer indices"):
        coll.get_batch(["chr1"], [0], [10], tracks=[1.5])


def test_unknown_track_in_config_suggests(sdata):
    with pytest.raises((KeyError, ValueError)) as ei:
        cfg(sdata, tracks=["trak1"]).build()
    assert "trak1" in str(ei.value) and "track1" in str(ei.value)


def test_duplicate_track_names_are_refused(sdata):
    with pytest.raises(ValueError) as ei:
        BigWigCollection(sdata.bigwig_paths, track_names=["a", "b", "a"])
    assert "duplicate track names ['a']" in str(ei.value) and "track_names=" in str(ei.value)
    with pytest.raises(ValueError, match=r"duplicate track names \['track0'\]"):
        cfg(sdata, bigwig_paths=[sdata.bigwig_paths[0]] * 2).build()      # the same file twice
    with pytest.raises(ValueError, match="duplicate track names"):
        cfg(sdata, track_names=["x", "x", "y"]).build()
    with pytest.raises(ValueError, match="3 track names for 2 files|2 track names for 3 files"):
        BigWigCollection(sdata.bigwig_paths, track_names=["a", "b"])


# ------------------------------------------------------------------------------------ FASTA vs bigWigs
def _fasta(path: Path, contigs: dict):
    with open(path, "w") as fh:
        for name, n in contigs.items():
            fh.write(f">{name}\n")
            seq = "ACGT" * (n // 4 + 1)
            for i in range(0, n, 60):
                fh.write(seq[i:min(i + 60, n)] + "\n")
    return str(path)


def test_fasta_with_other_chromosome_names_is_refused_listing_both_sides(sdata, tmp_path):
    fa = _fasta(tmp_path / "ensembl.fa", {"1": 200_000, "2": 120_000, "3": 60_000})
    with pytest.raises(ValueError) as ei:
        cfg(sdata, reference_genome=fa).build()
    msg = str(ei.value)
    assert "only in the bigWigs: 3 (chr1, chr2, chr3)" in msg
    assert "only in the FASTA" in msg and "(1, 2, 3)" in msg and fa in msg
    assert "'chr' prefix" in msg


def test_fasta_missing_sampled_chromosomes_is_refused_at_build(sdata, tmp_path):
    fa = _fasta(tmp_path / "partial.fa", {"chr1": 200_000, "chrZ": 1_000})
    with pytest.raises(ValueError) as ei:
        cfg(sdata, reference_genome=fa).build()
    msg = str(ei.value)
    assert "chr2" in msg and "chr3" in msg and fa in msg



def test_fasta_with_shorter_chromosomes(sdata, tmp_path):
    """Same names, different sizes: refused or read, never a crash."""
    fa = _fasta(tmp_path / "short.fa", {"chr1": 1_000, "chr2": 1_000, "chr3": 1_000})
    try:
        ds = cfg(sdata, reference_genome=fa).build()
    except ValueError as e:
        assert "size" in str(e) or "length" in str(e)
        return
    try:
        for b in ds:
            assert b.sequences.shape == (4, 500, 4)
    except (ValueError, KeyError) as e:
        assert fa in str(e) or "chr" in str(e)
    finally:
        ds.close()


def test_missing_fasta_is_refused(sdata, tmp_path):
    with pytest.raises(FileNotFoundError) as ei:
        cfg(sdata, reference_genome=str(tmp_path / "nope.fa")).build()
    assert "nope.fa" in str(ei.value)


# ------------------------------------------------------------------------------------ scaling
@pytest.mark.parametrize("scaling", [[math.nan, 1, 1], [1, math.inf, 1], [1, 1, -math.inf],
                                     {"track0": math.nan}, {"track2": math.inf}])
def test_nan_or_inf_scaling_is_refused(sdata, scaling):
    with pytest.raises(LoaderConfigError, match="scaling must be a list of finite numbers"):
        cfg(sdata, scaling=scaling).build()
    with pytest.raises(ValueError, match="scaling factors must be finite numbers"):
        BigWigCollection(sdata.bigwig_paths, scaling=scaling)


def test_nan_scaling_in_yaml_is_refused(sdata):
    text = f"bigwig_paths: {list(sdata.bigwig_paths)}\nscaling: [.nan, 1, 1]\n"
    with pytest.raises(LoaderConfigError, match="scaling"):
        LoaderConfig.from_yaml(text)


def test_scaling_of_the_wrong_size_or_unknown_tracks_is_refused(sdata):
    with pytest.raises(ValueError, match="scaling has 2 factors for 3 tracks"):
        BigWigCollection(sdata.bigwig_paths, scaling=[1, 2])
    with pytest.raises(KeyError) as ei:
        BigWigCollection(sdata.bigwig_paths, scaling={"trak0": 2.0})
    assert "did you mean 'track0'" in str(ei.value)


def test_infinite_default_value_is_refused_by_the_config(sdata):
    with pytest.raises(LoaderConfigError, match="default_value must be finite or .nan"):
        cfg(sdata, default_value=math.inf).build()


@pytest.mark.parametrize("knob, value", [("sequence_length", -5), ("sequence_length", 1.5), ("batch_size", 0),
                                         ("batch_size", "8"), ("window_size", True), ("num_workers", 0)])
def test_bad_knob_values_are_refused(knob, value):
    with pytest.raises((ValueError, TypeError)) as ei:
        LoaderConfig(**{knob: value}) if knob != "window_size" else LoaderConfig.from_dict({knob: value})
    assert knob in str(ei.value)


# ------------------------------------------------------------------------------------ batches too large
def test_batch_too_large_for_memory_is_refused_with_the_estimate(coll):
    """10^6 queries x 10^6 bases x 3 tracks: a ValueError up front with the size, not a MemoryError."""
    starts = np.zeros(10**6, np.int64)
    with pytest.raises(ValueError) as ei:
        coll.get_batch("chr1", starts, starts + 10**6)
    msg = str(ei.value)
    assert "1000000 queries x 1000000 bases x 3 tracks" in msg
    assert "GiB" in msg and "batch_size" in msg


def test_too_large_windowed_batch_is_refused_too(coll):
    starts = np.zeros(10**5, np.int64)
    with pytest.raises(ValueError, match="GiB"):
        coll.get_batch(["chr1"] * 10**5, starts, starts + 10**7, window_size=1)


def test_large_but_windowed_batch_is_estimated_by_its_output(coll):
    """A wide window shrinks the output: 64 x 200 kb x 3 tracks at window 1000 is fine."""
    starts = np.zeros(64, np.int64)
    v = coll.get_batch(["chr1"] * 64, starts, starts + 200_000, window_size=1000)
    assert v.shape == (64, 200, 3)


def test_config_batch_too_large_is_refused_at_build(sdata):
    with pytest.raises(ValueError, match="GiB"):
        cfg(sdata, batch_size=10**6, sequence_length=10**5, batches_per_epoch=1).build()

