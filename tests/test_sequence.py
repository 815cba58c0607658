"""ReferenceGenome, one-hot encoding, unknown fraction and reverse complement, on real FASTA files."""

from __future__ import annotations

import os
import struct
import zlib

import ml_dtypes
import numpy as np
import pytest

from bwloader_core.sequence import (
    ReferenceGenome,
    as_codes,
    check_chromosomes,
    one_hot,
    reverse_complement_codes,
    unknown_fraction,
)

ALPHABET = np.frombuffer(b"ACGTACGTACGTacgtacgtNNnRYKMSWBDHVryn", dtype=np.uint8)


def random_seq(rng, n: int) -> bytes:
    return ALPHABET[rng.integers(0, len(ALPHABET), n)].tobytes()


def write_fasta(path, records: dict[str, bytes], width: int = 60, newline: bytes = b"\n") -> None:
    with open(path, "wb") as fh:
        for name, seq in records.items():
            fh.write(b">" + name.encode() + b" some description" + newline)
            for i in range(0, len(seq), width):
                fh.write(seq[i:i + width] + newline)


def bgzip_bytes(data: bytes, block_size: int = 1000) -> bytes:
    """A small BGZF writer (gzip members with the BC extra field), plus the EOF block."""
    out = bytearray()
    for i in range(0, len(data), block_size):
        chunk = data[i:i + block_size]
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        cdata = comp.compress(chunk) + comp.flush()
        bsize = 18 + len(cdata) + 8
        out += struct.pack("<BBBBIBBHBBHH", 31, 139, 8, 4, 0, 0, 255, 6, 66, 67, 2, bsize - 1)
        out += cdata
        out += struct.pack("<II", zlib.crc32(chunk) & 0xFFFFFFFF, len(chunk))
    out += bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
    return bytes(out)


@pytest.fixture(scope="module")
def records():
    rng = np.random.default_rng(1)
    return {"chr1": random_seq(rng, 5000), "chr2": random_seq(rng, 1234), "chrM": random_seq(rng, 61)}


@pytest.fixture(scope="module")
def fasta(tmp_path_factory, records):
    path = tmp_path_factory.mktemp("fa") / "genome.fa"
    write_fasta(path, records)
    return path


def reference_fetch(records, chrom, start, end) -> bytes:
    seq = records[chrom]
    return bytes(seq[i] if 0 <= i < len(seq) else ord("N") for i in range(start, end))


def check_fetches(genome, records, rng):
    assert genome.chrom_sizes == {k: len(v) for k, v in records.items()}
    cases = [("chr1", 0, 5000), ("chr1", 59, 61), ("chr1", 60, 180), ("chr1", -10, 20), ("chr1", 4990, 5010),
             ("chrM", -5, 70), ("chr2", 2000, 2010), ("chr2", -30, -10), ("chr2", 0, 0), ("chrM", 60, 61)]
    for _ in range(200):
        chrom = str(rng.choice(list(records)))
        s = int(rng.integers(-50, len(records[chrom]) + 10))
        cases.append((chrom, s, s + int(rng.integers(0, 300))))
    for chrom, s, e in cases:
        assert genome.fetch(chrom, s, e) == reference_fetch(records, chrom, s, e), (chrom, s, e)
    # batch of equal lengths
    chroms = [c for c, _, _ in cases[:50]]
    starts = np.array([s for _, s, _ in cases[:50]])
    codes = genome.fetch_batch(chroms, starts, starts + 77)
    assert codes.dtype == np.uint8 and codes.shape == (50, 77)
    for i in range(50):
        assert codes[i].tobytes() == reference_fetch(records, chroms[i], int(starts[i]), int(starts[i]) + 77)


def test_plain_fasta_fetch_builds_index(fasta, records):
    if os.path.exists(str(fasta) + ".fai"):
        os.remove(str(fasta) + ".fai")
    with ReferenceGenome(fasta) as genome:
        assert os.path.exists(str(fasta) + ".fai")
        check_fetches(genome, records, np.random.default_rng(2))
        assert "chr1" in genome and "chrX" not in genome


def test_crlf_and_odd_width(tmp_path, records):
    path = tmp_path / "crlf.fa"
    write_fasta(path, records, width=37, newline=b"\r\n")
    with ReferenceGenome(path) as genome:
        check_fetches(genome, records, np.random.default_rng(3))


def test_bgzipped_fasta_matches_plain(tmp_path, records):
    pytest.importorskip("Bio.bgzf", reason="pyfaidx reads BGZF through Biopython")
    plain = tmp_path / "g.fa"
    write_fasta(plain, records)
    gz = tmp_path / "g.fa.gz"
    gz.write_bytes(bgzip_bytes(plain.read_bytes(), block_size=700))
    with ReferenceGenome(gz) as genome:
        assert os.path.exists(str(gz) + ".fai") and os.path.exists(str(gz) + ".gzi")
        check_fetches(genome, records, np.random.default_rng(4))


def test_plain_gzip_rejected_with_clear_message(tmp_path, records):
    pytest.importorskip("Bio.bgzf")
    import gzip

    plain = tmp_path / "p.fa"
    write_fasta(plain, records)
    gz = tmp_path / "p.fa.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    with pytest.raises(ValueError, match="BGZF"):
        ReferenceGenome(gz)


def test_unknown_chromosome_and_bad_args(fasta):
    with ReferenceGenome(fasta) as genome:
        with pytest.raises(KeyError, match="chrX"):
            genome.fetch("chrX", 0, 10)
        with pytest.raises(KeyError, match="chrX"):
            genome.fetch_batch(["chr1", "chrX"], [0, 0], [10, 10])
        with pytest.raises(ValueError, match="common"):
            genome.fetch_batch(["chr1", "chr1"], [0, 0], [10, 11])
        with pytest.raises(ValueError):
            genome.fetch("chr1", 10, 5)
    with pytest.raises(ValueError, match="one_hot_unknown"):
        ReferenceGenome(fasta, one_hot_unknown="half")
    with pytest.raises(FileNotFoundError):
        ReferenceGenome(str(fasta) + ".missing")
    genome = ReferenceGenome(fasta)
    genome.close()
    with pytest.raises(ValueError, match="closed"):
        genome.fetch("chr1", 0, 10)


# -------------------------------------------------------------------------------------------------
# encoding
# -------------------------------------------------------------------------------------------------

REF_INDEX = {b: i for i, b in enumerate(b"ACGT")}


def reference_one_hot(seq: bytes, unknown: float) -> np.ndarray:
    out = np.full((len(seq), 4), unknown, dtype=np.float64)
    for i, b in enumerate(seq.upper()):
        if b in REF_INDEX:
            out[i] = 0
            out[i, REF_INDEX[b]] = 1
    return out


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "uint8", "bool", np.float32])
@pytest.mark.parametrize("unknown", ["zeros", "quarter"])
def test_one_hot_matches_reference(dtype, unknown):
    rng = np.random.default_rng(5)
    seqs = [random_seq(rng, 300) for _ in range(4)]
    codes = as_codes(seqs)
    if unknown == "quarter" and dtype in ("uint8", "bool"):
        with pytest.raises(ValueError, match="quarter"):
            one_hot(codes, dtype=dtype, unknown=unknown)
        return
    out = one_hot(codes, dtype=dtype, unknown=unknown)
    expected_dtype = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    assert out.shape == (4, 300, 4) and out.dtype == expected_dtype
    ref = np.stack([reference_one_hot(s, 0.25 if unknown == "quarter" else 0.0) for s in seqs])
    np.testing.assert_array_equal(out.astype(np.float64), ref)


def test_one_hot_soft_masked_iupac_and_every_byte_safe():
    all_bytes = np.arange(256, dtype=np.uint8)[None, :]
    out = one_hot(all_bytes)
    assert out.shape == (1, 256, 4)
    for upper in b"ACGT":
        np.testing.assert_array_equal(out[0, upper], out[0, upper + 32])  # lowercase == uppercase
        assert out[0, upper].sum() == 1
    assert out[0, :].sum() == 8  # exactly A, C, G, T in both cases
    np.testing.assert_array_equal(one_hot(b"ACGTacgt")[:, :4], np.tile(np.eye(4, dtype=np.float32), (2, 1)))
    quarter = one_hot(b"NnRYKMSWBDHV-.*", unknown="quarter")
    np.testing.assert_array_equal(quarter, np.full((15, 4), 0.25, dtype=np.float32))
    np.testing.assert_array_equal(one_hot(b"NnRY", unknown="zeros"), np.zeros((4, 4), dtype=np.float32))


def test_genome_one_hot_uses_option(fasta, records):
    with ReferenceGenome(fasta, one_hot_unknown="quarter") as genome:
        codes = genome.fetch_batch(["chr1", "chr2"], [-20, 100], [80, 200])
        oh = genome.one_hot(codes, dtype="bfloat16")
        assert oh.dtype == np.dtype(ml_dtypes.bfloat16)
        np.testing.assert_array_equal(oh[0, :20].astype(np.float32), 0.25)  # padding N
        ref = reference_one_hot(records["chr2"][100:200], 0.25)
        np.testing.assert_array_equal(oh[1].astype(np.float64), ref)
        rc = genome.fetch_one_hot(["chr2"], [100], [200], reverse_complement=[True])
        np.testing.assert_array_equal(rc[0], genome.one_hot(reverse_complement_codes(codes[1:]))[0])


def test_unknown_fraction_case_insensitive():
    codes = as_codes([b"ACGTacgt", b"NNNNacgt", b"RYKMnnnn", b"AAAAAAA-"])
    np.testing.assert_allclose(unknown_fraction(codes), [0.0, 0.5, 1.0, 0.125])
    assert unknown_fraction(np.zeros((3, 0), dtype=np.uint8)).shape == (3,)
    rng = np.random.default_rng(6)
    seqs = [random_seq(rng, 1000) for _ in range(5)]
    ref = [sum(b not in b"ACGT" for b in s.upper()) / 1000 for s in seqs]
    np.testing.assert_allclose(unknown_fraction(as_codes(seqs)), ref)


def test_reverse_complement_codes():
    assert reverse_complement_codes(b"ACGTacgtN").tobytes() == b"NacgtACGT"
    assert reverse_complement_codes(b"AACnG").tobytes() == b"CnGTT"
    assert reverse_complement_codes(b"RYKMSWBDHV").tobytes() == b"BDHVWSKMRY"
    all_bytes = np.arange(256, dtype=np.uint8)[None, :]
    twice = reverse_complement_codes(reverse_complement_codes(all_bytes))
    np.testing.assert_array_equal(twice, all_bytes)  # an involution on every byte
    rng = np.random.default_rng(7)
    codes = as_codes([random_seq(rng, 500) for _ in range(3)])
    rc = reverse_complement_codes(codes)
    # one-hot of the reverse complement == one-hot flipped on both the sequence and channel axes
    np.testing.assert_array_equal(one_hot(rc), one_hot(codes)[:, ::-1, ::-1])
    assert np.array_equal(unknown_fraction(rc), unknown_fraction(codes))


def test_as_codes_forms():
    np.testing.assert_array_equal(as_codes("ACgt"), np.frombuffer(b"ACgt", dtype=np.uint8))
    np.testing.assert_array_equal(as_codes(np.array([b"AC", b"GT"])), [[65, 67], [71, 84]])
    np.testing.assert_array_equal(as_codes(np.array(["AC", "GT"])), [[65, 67], [71, 84]])
    np.testing.assert_array_equal(as_codes(np.array([[65, 67]], dtype=np.int64)), [[65, 67]])
    with pytest.raises(ValueError):
        as_codes(np.array([300]))
    with pytest.raises(ValueError, match="same length"):
        as_codes([b"ACG", b"A"])
    with pytest.raises(ValueError, match="dtype"):
        one_hot(b"ACGT", dtype="int32")


def test_check_chromosomes(fasta):
    assert check_chromosomes(["chr1", "chr2", "chr9"], fasta) == ["chr1", "chr2"]
    with pytest.raises(ValueError) as info:
        check_chromosomes(["1", "2", "3", "MT"], fasta)
    msg = str(info.value)
    assert "share no chromosome" in msg and "only in the bigWigs: 4 (1, 2, 3, MT)" in msg
    assert "only in the FASTA" in msg and "chr1" in msg and "'chr' prefix" in msg
    with pytest.raises(ValueError, match="missing from the FASTA.*chr9"):
        check_chromosomes(["chr1", "chr9"], fasta, query_chroms=["chr1", "chr9"])
    with pytest.raises(ValueError, match="share none of the 2 queried"):
        check_chromosomes(["chr5", "chr9"], fasta, query_chroms=["chr5", "chr9"])
    many = [f"ctg{i}" for i in range(40)]
    with pytest.raises(ValueError, match=r"40 \(ctg0, ctg1, ctg2, ctg3, ctg4, \.\.\.\)"):
        check_chromosomes(many, {"chr1": 10})
    with ReferenceGenome(fasta) as genome:
        assert genome.check_chromosomes(["chrM", "chr1"], query_chroms=["chr1"]) == ["chrM", "chr1"]


def test_fetch_batch_vectorised_speed(fasta):
    """A long-context batch (64 x 5 kb) is read and encoded without per-base Python work."""
    import time

    with ReferenceGenome(fasta) as genome:
        starts = np.arange(64) * 50 - 1000
        t0 = time.perf_counter()
        for _ in range(5):
            codes = genome.fetch_batch(["chr1"] * 64, starts, starts + 5000)
            oh = genome.one_hot(codes)
            unknown_fraction(codes)
            reverse_complement_codes(codes)
        elapsed = time.perf_counter() - t0
        assert oh.shape == (64, 5000, 4)
        assert elapsed < 2.0
