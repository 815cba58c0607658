"""The README's Borzoi-like config loads, builds and gives the batches it describes."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from bwloader_core import BigWigCollection
from bwloader_core.config import LoaderConfig
from bwloader_core.demo import write_demo_collection
from bwloader_core.dtypes import cast_output
from bwloader_core.transforms import apply_transforms

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_config() -> str:
    text = README.read_text()
    section = text.split("## Stranded tracks, transforms and mixtures", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```yaml\n(.*?)```", section, re.S).group(1)


def test_readme_borzoi_config_builds_and_matches_get_batch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    info = write_demo_collection("demo_data", n_tracks=8)
    Path("demo_data/peaks.bed").write_text("chr1\t600000\t610000\nchr2\t700000\t705000\n")
    Path("demo_data/blacklist.bed").write_text("chr1\t0\t300000\n")
    cfg = LoaderConfig.from_yaml(readme_config())
    assert LoaderConfig.from_yaml(cfg.to_yaml()).to_dict() == cfg.to_dict()
    cfg.batches_per_epoch, cfg.num_workers = 2, 1
    with cfg.build() as ds, BigWigCollection("demo_data", scaling=cfg.scaling) as coll:
        names = list(ds.track_names)
        assert names == list(coll.track_names) and sorted(names) == sorted(info["track_names"])
        p, m = names.index("RNA_plus_rep1"), names.index("RNA_minus_rep1")
        for batch in ds:
            assert batch.values.shape == (2, 6144, 8) and batch.values.dtype == np.float16
            assert batch.sequences.shape == (2, 524288, 4)
            assert batch.region_source_names == ("peaks", "background")
            assert sorted(batch.region_source.tolist()) == [0, 1]
            assert batch.strand_partners[p] == m and batch.strand_partners[m] == p
            ref = coll.get_batch(batch.chromosomes, batch.target_starts, batch.target_ends,
                                 window_size=32, reduce="sum")
            for i, rc in enumerate(batch.reverse_complement):
                if rc:
                    ref[i] = ref[i, ::-1][:, batch.strand_partners]
            want = cast_output(apply_transforms(ref, cfg.value_transforms), "float16")
            np.testing.assert_array_equal(batch.values, want)
            assert np.nanmax(batch.values.astype(np.float32)) <= 768
