"""Core API the dashboard uses (public, so the app reaches into nothing private): resuming an epoch
part-way with `BigWigDataset.loader`, and BED content parsed without a temporary file."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

from bwloader_core import LoaderConfig
from bwloader_core.demo import write_demo_collection
from bwloader_core.sampling import parse_bed

CHROMS = {"chr1": 200_000, "chr2": 100_000}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    write_demo_collection(root, n_tracks=2, chrom_sizes=CHROMS, seed=4)
    return root


def test_loader_resumes_an_epoch_with_the_same_batches(demo):
    cfg = LoaderConfig(bigwig_paths=[str(demo)], reference_genome=str(demo / "genome.fa"), sequence_length=500,
                       batch_size=4, batches_per_epoch=6, seed=3, num_workers=2)
    with cfg.build() as ds:
        ds.set_epoch(2)
        full = list(ds)
        with ds.loader(2, start=3, stop=5) as loader:
            part = list(loader)
        with ds.loader(2, start=4) as loader:
            tail = list(loader)
        assert [b.index for b in part] == [3, 4] and [b.index for b in tail] == [4, 5]
        for got, want in zip(part + tail, full[3:5] + full[4:]):
            assert got.epoch == want.epoch == 2
            np.testing.assert_array_equal(got.starts, want.starts)
            np.testing.assert_array_equal(got.values, want.values)
            np.testing.assert_array_equal(got.sequences, want.sequences)
        with pytest.raises(IndexError, match="out of range"):
            ds.loader(0, start=7)
        assert list(ds)[0].epoch == 3                     # the epoch count did not move


def test_parse_bed_reads_text_bytes_and_gzip_and_names_the_source():
    text = "# peaks\nchr1\t100\t200\nchr2 50 80\nchrUn\t1\t5\n"
    for data in (text, text.encode(), gzip.compress(text.encode()), text.splitlines(keepends=True)):
        regs = parse_bed(data, CHROMS, unknown_chroms="drop", source="peaks.bed")
        assert regs.to_list() == [("chr1", 100, 200), ("chr2", 50, 80)]
    with pytest.raises(ValueError, match=r"^peaks\.bed:2: start and end must be integers"):
        parse_bed("chr1\t1\t2\nchr1\tx\t10\n", CHROMS, source="peaks.bed")
    with pytest.raises(ValueError, match=r"peaks\.bed: 1 chromosome\(s\) not in the bigWig chromosome list: chrUn"):
        parse_bed("chrUn\t1\t5\n", CHROMS, source="peaks.bed")
    with pytest.raises(ValueError, match="not a text"):
        parse_bed(b"\xff\xfe\x00binary", CHROMS, source="peaks.bed")
