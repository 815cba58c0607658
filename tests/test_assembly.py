"""What real data roots hold: files of two assemblies, FASTAs named in another style, a broken file
in a folder, sequences that are mostly N. bigWigs written with pyBigWig, FASTAs as plain text."""
from __future__ import annotations

import numpy as np
import pytest

from bwloader_core import BigWigCollection, LoaderConfig
from bwloader_core.assembly import AssemblyError, guess_assembly, name_matches
from bwloader_core.config import AssemblyWarning

pyBigWig = pytest.importorskip("pyBigWig")

BASES = np.frombuffer(b"ACGT", np.uint8)


def write_bw(path, sizes: dict, step=50, value=1.0):
    """A bigWig with a bedGraph record every `step` bases over each chromosome's first 200 kb."""
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader(list(sizes.items()), maxZooms=0)
    for c, n in sizes.items():
        starts = np.arange(0, min(n, 200_000) - step, step, dtype=np.int64)
        bw.addEntries([c] * len(starts), starts.tolist(), ends=(starts + step // 2).tolist(),
                      values=[float(value)] * len(starts))
    bw.close()
    return str(path)


def write_fasta(path, sizes: dict, seed=0, n_run=None):
    """Random ACGT per chromosome (`n_run`: (chrom, start, end) of N)."""
    rng = np.random.default_rng(seed)
    seqs = {}
    with open(path, "w") as fh:
        for c, n in sizes.items():
            s = BASES[rng.integers(0, 4, n)].copy()
            if n_run and n_run[0] == c:
                s[n_run[1]:n_run[2]] = ord("N")
            seqs[c] = s
            fh.write(f">{c}\n")
            for i in range(0, n, 60):
                fh.write(s[i:i + 60].tobytes().decode() + "\n")
    return str(path), seqs


def test_fasta_of_another_assembly_is_refused_naming_chromosome_sizes_and_files(tmp_path):
    """The issue's case: chr21 is 2,000 bp in the FASTA and 48,129,895 bp (hg19) in the bigWig."""
    bw = write_bw(tmp_path / "signal.bw", {"chr21": 48_129_895})
    fa, seqs = write_fasta(tmp_path / "toy.fa", {"chr21": 2_000})
    cfg = LoaderConfig(bigwig_paths=[bw], reference_genome=fa, sequence_length=1000, batch_size=8)
    with pytest.raises(AssemblyError) as ei:
        cfg.build()
    msg = str(ei.value)
    assert "chr21" in msg and "48,129,895 bp" in msg and "2,000 bp" in msg
    assert bw in msg and fa in msg and "hg19" in msg and "allow_size_mismatch" in msg
    # allowed: only the common extent (the FASTA's 2,000 bp) is sampled, and the sequences are real
    cfg.allow_size_mismatch = True
    with pytest.warns(AssemblyWarning, match=r"2,000 of 48,129,895 bp"):
        ds = cfg.build()
    with ds:
        assert ds.assembly.kept_bp == 2_000 and ds.assembly.sampled_bp == 48_129_895
        batch = next(iter(ds))
    assert (batch.ends <= 2_000).all() and (batch.starts >= 0).all()
    assert (batch.sequences.sum(axis=(1, 2)) == 1000).all()                 # every base known: no N
    assert batch.stats["unknown_fraction"] == 0.0
    i = 0
    want = np.eye(4, dtype=np.float32)[np.searchsorted(BASES, seqs["chr21"][batch.starts[i]:batch.ends[i]])]
    np.testing.assert_array_equal(batch.sequences[i], want)
    assert LoaderConfig.from_yaml(cfg.to_yaml()).allow_size_mismatch is True


def test_bigwigs_of_two_assemblies_are_refused_and_allowed_on_the_common_extent(tmp_path):
    a = write_bw(tmp_path / "a.bw", {"chr1": 120_000, "chr2": 50_000})
    b = write_bw(tmp_path / "b.bw", {"chr1": 100_000, "chr2": 50_000})
    with pytest.raises(AssemblyError, match=r"chr1: 120,000 bp in .*a\.bw vs 100,000 bp in .*b\.bw"):
        LoaderConfig(bigwig_paths=[a, b], sequence_length=1000).build()
    # a mismatch on a chromosome that is not sampled is not an error
    with LoaderConfig(bigwig_paths=[a, b], sequence_length=1000, regions=[["chr2", 0, 50_000]]).build() as ds:
        assert ds.assembly.ok and [m.chrom for m in ds.assembly.unsampled_mismatches] == ["chr1"]
    cfg = LoaderConfig(bigwig_paths=[a, b], sequence_length=1000, batch_size=64, allow_size_mismatch=True, seed=5)
    with pytest.warns(AssemblyWarning, match=r"150,000 of 170,000 bp"):
        ds = cfg.build()
    with ds:
        ends = np.concatenate([b.ends[b.chromosomes == "chr1"] for _, b in zip(range(5), ds)])
    assert len(ends) and ends.max() <= 100_000


def test_fasta_in_ensembl_names_works_with_chromosome_aliases(tmp_path):
    bw = write_bw(tmp_path / "ucsc.bw", {"chr1": 30_000, "chrX": 20_000, "chrM": 16_569})
    fa, seqs = write_fasta(tmp_path / "ensembl.fa", {"1": 30_000, "X": 20_000, "MT": 16_569}, seed=2)
    cfg = LoaderConfig(bigwig_paths=[bw], reference_genome=fa, sequence_length=500, batch_size=16, seed=1)
    with pytest.raises(ValueError) as ei:
        cfg.build()
    msg = str(ei.value)
    assert "chr1 = 1" in msg and "chrX = X" in msg and "chrM = MT" in msg and "chromosome_aliases: auto" in msg
    for aliases in ("auto", {"1": "chr1", "X": "chrX", "MT": "chrM"}):
        cfg.chromosome_aliases = aliases
        back = LoaderConfig.from_yaml(cfg.to_yaml())
        assert back.chromosome_aliases == aliases
        with back.build() as ds:
            batch = next(iter(ds))
        fasta_name = {"chr1": "1", "chrX": "X", "chrM": "MT"}
        for i in range(batch.batch_size):
            c, s, e = str(batch.chromosomes[i]), int(batch.starts[i]), int(batch.ends[i])
            want = np.eye(4, dtype=np.float32)[np.searchsorted(BASES, seqs[fasta_name[c]][s:e])]
            np.testing.assert_array_equal(batch.sequences[i], want)
    # sizes are compared through the aliases too
    fa2, _ = write_fasta(tmp_path / "short.fa", {"1": 10_000, "X": 20_000, "MT": 16_569})
    with pytest.raises(AssemblyError, match=r"chr1: 30,000 bp in .*ucsc\.bw vs 10,000 bp in .*short\.fa"):
        LoaderConfig(bigwig_paths=[bw], reference_genome=fa2, chromosome_aliases="auto").build()


def test_only_some_names_differ_says_which_would_match(tmp_path):
    bw = write_bw(tmp_path / "ucsc.bw", {"chr1": 30_000, "chrX": 20_000, "chrM": 16_569})
    fa, _ = write_fasta(tmp_path / "mixed.fa", {"chr1": 30_000, "X": 20_000, "MT": 16_569})
    with pytest.raises(ValueError) as ei:
        LoaderConfig(bigwig_paths=[bw], reference_genome=fa).build()
    msg = str(ei.value)
    assert "chrX = X" in msg and "chrM = MT" in msg and "chr1 = " not in msg
    assert name_matches(["chrX", "chrM", "chr7"], ["X", "MT", "chr1"]) == {"chrX": "X", "chrM": "MT"}
    assert guess_assembly("21", 46_709_983) == "hg38 (GRCh38)" and guess_assembly("chr1", 12) is None


def test_bad_aliases_are_refused(tmp_path):
    with pytest.raises(ValueError, match="chromosome_aliases"):
        LoaderConfig.from_yaml("chromosome_aliases: [1, 2]\n")


def test_folder_with_a_broken_file_skips_it_on_request(tmp_path):
    write_bw(tmp_path / "good1.bw", {"chr1": 30_000})
    write_bw(tmp_path / "good2.bw", {"chr1": 30_000})
    (tmp_path / "bad_bw.bw").write_bytes(b"this is not a bigWig file at all" * 10)
    (tmp_path / "empty.bw").write_bytes(b"")
    with pytest.raises(ValueError, match="bad_bw.bw"):
        BigWigCollection(tmp_path)                                       # the default: raise
    with BigWigCollection(tmp_path, on_error="skip") as coll:
        assert coll.track_names == ["good1", "good2"]
        assert sorted(p.rsplit("/", 1)[1] for p, _ in coll.skipped) == ["bad_bw.bw", "empty.bw"]
        assert all(reason for _, reason in coll.skipped)
        assert coll.get_batch("chr1", [0], [100]).shape == (1, 100, 2)
    with pytest.raises(ValueError, match="for a folder"):                 # named files must open
        BigWigCollection([str(tmp_path / "good1.bw"), str(tmp_path / "bad_bw.bw")], on_error="skip")


def test_unknown_bases_are_reported_per_batch_and_stream(tmp_path):
    bw = write_bw(tmp_path / "s.bw", {"chr1": 40_000})
    fa, _ = write_fasta(tmp_path / "g.fa", {"chr1": 40_000}, n_run=("chr1", 0, 30_000))
    cfg = LoaderConfig(bigwig_paths=[bw], reference_genome=fa, sequence_length=1000, batch_size=16,
                       batches_per_epoch=3, max_unknown_fraction=None, seed=0)
    with cfg.build() as ds:
        with ds.loader(0) as loader:
            batches = list(loader)
            total = loader.unknown_fraction
    for b in batches:
        per_sample = 1 - b.sequences.sum(axis=(1, 2)) / 1000
        assert b.stats["unknown_fraction"] == pytest.approx(per_sample.mean())
        assert b.stats["all_unknown_samples"] == int((per_sample == 1).sum())
    assert total == pytest.approx(np.mean([b.stats["unknown_fraction"] for b in batches]))
    assert 0.5 < total < 1.0                                                # 3/4 of the chromosome is N
    # the default (0.5) redraws windows that are mostly N
    cfg.max_unknown_fraction = LoaderConfig.param.max_unknown_fraction.default
    with cfg.build() as ds:
        assert all(b.stats["unknown_fraction"] <= 0.5 for b in ds)
    # a stream whose every sequence is N says so once
    cfg2 = LoaderConfig(bigwig_paths=[bw], reference_genome=fa, sequence_length=1000, batch_size=4,
                        batches_per_epoch=2, max_unknown_fraction=None, regions=[["chr1", 0, 20_000]])
    with cfg2.build() as ds, pytest.warns(RuntimeWarning, match="N\\) only"):
        assert all(b.stats["all_unknown_samples"] == 4 for b in ds)


def test_sampled_chromosomes_of_lists_mixtures_and_excludes():
    from bwloader_core.assembly import sampled_chromosomes
    sizes = {"chr1": 1000, "chr2": 1000, "chr3": 1000}
    assert sampled_chromosomes(None, None, sizes) == ["chr1", "chr2", "chr3"]
    assert sampled_chromosomes(None, [["chr2", 0, 1000]], sizes) == ["chr1", "chr3"]
    mix = {"peaks": {"regions": [["chr2", 10, 50]], "weight": 1},
           "background": {"regions": "all", "exclude": [["chr3", 0, 1000]], "weight": 3},
           "off": {"regions": [["chrZ", 0, 5], ["chr3", 0, 10]], "weight": 0}}
    assert sampled_chromosomes(mix, None, sizes) == ["chr2", "chr1"]
