"""LoaderConfig: docs, YAML round trip, errors, safe loading, and build() end to end."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pyBigWig
import pyfaidx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import stream_data  # noqa: E402

from bwloader_core import BigWigCollection  # noqa: E402
from bwloader_core.config import FORMAT_VERSION, LoaderConfig, LoaderConfigError  # noqa: E402


@pytest.fixture(scope="session")
def sdata(tmp_path_factory):
    return stream_data.write_stream_data(tmp_path_factory.mktemp("config_stream"), seed=11)


def knobs():
    return [n for n in LoaderConfig.param if n != "name"]


def same(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def assert_same_config(a: LoaderConfig, b: LoaderConfig):
    for k in knobs():
        va, vb = getattr(a, k), getattr(b, k)
        assert same(va, vb), f"{k}: {va!r} != {vb!r}"
        assert type(va) is type(vb), f"{k}: {type(va)} != {type(vb)}"


# -- knobs and docs ---------------------------------------------------------------------------------
def test_every_knob_has_a_doc():
    assert len(knobs()) >= 20
    for k in knobs():
        doc = LoaderConfig.param[k].doc
        assert doc and len(doc.strip()) >= 10, f"{k} has no doc"


def test_defaults_write_only_format_version():
    text = LoaderConfig().to_yaml()
    import yaml
    assert yaml.safe_load(text) == {"format_version": FORMAT_VERSION}


def test_to_yaml_writes_only_non_default_values(tmp_path):
    import yaml
    cfg = LoaderConfig(batch_size=8, reduce="max", sequence_length=2000)
    spec = yaml.safe_load(cfg.to_yaml())
    assert spec == {"format_version": FORMAT_VERSION, "batch_size": 8, "reduce": "max", "sequence_length": 2000}
    # a value set explicitly to its default is not written either
    cfg.seed = 0
    assert "seed" not in yaml.safe_load(cfg.to_yaml())
    # to_yaml(path) writes the same text it returns
    p = tmp_path / "c.yaml"
    assert cfg.to_yaml(p) == p.read_text()


# -- round trip ------------------------------------------------------------------------------------
ROUND_TRIP_CASES = {
    "nan_default": dict(default_value=float("nan"), dtype="bfloat16"),
    "regions_list": dict(regions=[["chr1", 0, 50_000], ["chr2", 1_000, 90_000]],
                         exclude=[["chr1", 100, 200]]),
    "regions_tuples": dict(regions=[("chr1", 0, 50_000)]),
    "regions_bed_path": dict(regions="/data/train.bed"),
    "scaling_list": dict(scaling=[1.0, 0.5, 2.25], tracks=2),
    "scaling_dict": dict(scaling={"track0": 1.5, "track2": 0.25}, tracks=["track0", "track2"]),
    "many": dict(bigwig_paths=["/x/a.bw", "/x/b.bw"], track_names=["a", "b"], reference_genome="/x/g.fa",
                 sequence_length=4096, center_bin_to_predict=1024, window_size=32, reduce="sum",
                 batch_size=7, batches_per_epoch=3, seed=123, num_workers=3, queue_size=9,
                 threads_per_worker=2, dtype="float16", default_value=-1.5, jitter=17,
                 reverse_complement=True, max_unknown_fraction=0.25, one_hot_unknown="quarter",
                 backend="auto"),
}


@pytest.mark.parametrize("case", sorted(ROUND_TRIP_CASES))
def test_yaml_round_trip_text_and_path(case, tmp_path):
    cfg = LoaderConfig(**ROUND_TRIP_CASES[case])
    text = cfg.to_yaml()
    from_text = LoaderConfig.from_yaml(text)
    if case != "regions_tuples":  # tuples come back as lists
        assert_same_config(cfg, from_text)
    p = tmp_path / "loader.yaml"
    cfg.to_yaml(p)
    for src in (p, str(p)):
        back = LoaderConfig.from_yaml(src)
        assert back.to_yaml() == text
        if case == "regions_tuples":  # tuples come back as lists: same regions
            assert back.regions == [["chr1", 0, 50_000]]
        else:
            assert_same_config(cfg, back)
    if case == "nan_default":
        assert math.isnan(from_text.default_value)
    if case == "scaling_dict":
        assert from_text.scaling == {"track0": 1.5, "track2": 0.25}
        assert from_text.tracks == ["track0", "track2"]
    if case == "scaling_list":
        assert from_text.tracks == 2 and isinstance(from_text.tracks, int)


def test_from_yaml_single_line_text_and_empty_text():
    assert LoaderConfig.from_yaml("batch_size: 8").batch_size == 8
    assert LoaderConfig.from_yaml("{batch_size: 8, seed: 3}").seed == 3
    assert_same_config(LoaderConfig.from_yaml(""), LoaderConfig())


def test_from_yaml_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(LoaderConfigError, match="cannot read"):
        LoaderConfig.from_yaml(tmp_path / "nope.yaml")
    with pytest.raises(LoaderConfigError, match="cannot read"):
        LoaderConfig.from_yaml(str(tmp_path / "nope.yml"))


# -- errors -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,suggestion", [
    ("batch_sise: 8", "batch_size"),
    ("sequence_lenght: 1000", "sequence_length"),
    ("bigwig_path: [a.bw]", "bigwig_paths"),
    ("reverse_compliment: true", "reverse_complement"),
])
def test_unknown_key_suggests_nearest(text, suggestion):
    key = text.split(":")[0]
    with pytest.raises(LoaderConfigError) as exc:
        LoaderConfig.from_yaml(text)
    msg = str(exc.value)
    assert repr(key) in msg and "unknown key" in msg
    assert f"did you mean {suggestion!r}" in msg


def test_unknown_key_from_a_file_names_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("format_version: 1\nbatchsize: 4\n")
    with pytest.raises(LoaderConfigError, match=r"bad\.yaml.*'batchsize'.*'batch_size'"):
        LoaderConfig.from_yaml(p)


@pytest.mark.parametrize("text,must_contain", [
    ("batch_size: 0", ["batch_size", "at least 1"]),
    ("num_workers: 0", ["num_workers", "at least 1"]),
    ("seed: -1", ["seed", "at least 0"]),
    ("batch_size: 2.5", ["batch_size", "integer"]),
    ("reduce: median", ["reduce", "median", "mean", "max", "min", "sum"]),
    ("dtype: int8", ["dtype", "float32", "float16", "bfloat16"]),
    ("max_unknown_fraction: 1.5", ["max_unknown_fraction", "1.0"]),
    ("window_size: 2000", ["window_size", "2000", "sequence_length", "1000"]),
    ("window_size: 10\ncenter_bin_to_predict: 105", ["center_bin_to_predict", "105", "multiple", "window_size", "10"]),
    ("center_bin_to_predict: 2000", ["center_bin_to_predict", "sequence_length"]),
    ("default_value: .inf", ["default_value", "finite"]),
    ("default_value: -.inf", ["default_value", "finite"]),
    ("scaling: [1.0, .nan]", ["scaling", "finite"]),
    ("scaling: {track0: .inf}", ["scaling", "finite"]),
    ("tracks: 1.5", ["tracks"]),
    ("format_version: 99", ["format_version", "99"]),
])
def test_bad_values_name_the_key_and_range(text, must_contain):
    with pytest.raises(LoaderConfigError) as exc:
        LoaderConfig.from_yaml(text)
    msg = str(exc.value)
    for part in must_contain:
        assert part in msg, f"{part!r} not in {msg!r}"


def test_config_error_is_a_value_error():
    assert issubclass(LoaderConfigError, ValueError)


@pytest.mark.parametrize("text", ["batch_size: [1, 2", "a: b: c", "key: 'unclosed", "\tbatch_size: 3"])
def test_invalid_yaml_is_a_readable_config_error(text):
    with pytest.raises(LoaderConfigError) as exc:
        LoaderConfig.from_yaml(text)
    assert "not valid YAML" in str(exc.value)
    assert "Traceback" not in str(exc.value)
    assert exc.value.__cause__ is None  # raised `from None`: one readable error


def test_non_mapping_yaml_is_a_config_error():
    with pytest.raises(LoaderConfigError, match="mapping"):
        LoaderConfig.from_yaml("- 1\n- 2\n")


def test_yaml_is_loaded_safely(tmp_path):
    marker = tmp_path / "created_by_yaml"
    evil = [
        f"!!python/object/apply:os.mkdir [{str(marker)!r}]\n",
        f"batch_size: !!python/object/apply:os.mkdir [{str(marker)!r}]\n",
        "!!python/object:bwloader_core.config.LoaderConfig {batch_size: 3}\n",
        "!!python/name:os.system\n",
    ]
    for text in evil:
        with pytest.raises(LoaderConfigError):
            LoaderConfig.from_yaml(text)
        p = tmp_path / "evil.yaml"
        p.write_text(text)
        with pytest.raises(LoaderConfigError):
            LoaderConfig.from_yaml(p)
    assert not marker.exists()


def test_build_needs_bigwig_paths():
    with pytest.raises(LoaderConfigError, match="bigwig_paths"):
        LoaderConfig().build()


# -- build() end to end ----------------------------------------------------------------------------
def assert_equal_values(a, b, **kw):
    """assert_array_equal, NaN == NaN also for bfloat16 (numpy does not see ml_dtypes NaNs)."""
    assert a.dtype == b.dtype, (a.dtype, b.dtype)
    if a.dtype.name == "bfloat16":
        a, b = a.astype(np.float32), b.astype(np.float32)
    np.testing.assert_array_equal(a, b, **kw)


def _collect(ds, epoch):
    ds.set_epoch(epoch)
    return list(ds)


def _assert_same_batches(a, b):
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert_equal_values(x.values, y.values)
        assert_equal_values(x.sequences, y.sequences)
        for f in ("chromosomes", "starts", "ends", "target_starts", "target_ends", "track_indices",
                  "reverse_complement"):
            np.testing.assert_array_equal(getattr(x, f), getattr(y, f))
        assert x.track_names == y.track_names
        assert (x.epoch, x.index) == (y.epoch, y.index)


def _stream_config(sdata, **kw):
    base = dict(bigwig_paths=list(sdata.bigwig_paths), reference_genome=sdata.fasta,
                regions=[["chr1", 0, 200_000], ["chr2", 10_000, 120_000], ["chr3", 0, 60_000]],
                exclude=[["chr1", 50_000, 60_000]], sequence_length=600, center_bin_to_predict=300,
                window_size=10, reduce="mean", batch_size=8, batches_per_epoch=5, seed=5, jitter=25,
                reverse_complement=True, tracks=2, scaling={"track0": 2.0, "track1": 0.5, "track2": 1.0},
                default_value=float("nan"), num_workers=2, queue_size=2, threads_per_worker=1)
    base.update(kw)
    return LoaderConfig(**base)


def test_yaml_round_trip_gives_the_same_batches(sdata, tmp_path):
    cfg = _stream_config(sdata)
    path = tmp_path / "loader.yaml"
    cfg.to_yaml(path)
    back = LoaderConfig.from_yaml(path)
    with cfg.build() as ds1, back.build() as ds2:
        a3, b3 = _collect(ds1, 3), _collect(ds2, 3)
        _assert_same_batches(a3, b3)
        assert all(b.epoch == 3 for b in a3)
        assert [b.index for b in a3] == list(range(5))
        # another epoch: other batches
        a4 = _collect(ds2, 4)
        assert len(a4) == len(a3)
        assert not all(np.array_equal(x.starts, y.starts) for x, y in zip(a3, a4))
        assert not np.array_equal(np.concatenate([b.starts for b in a3]), np.concatenate([b.starts for b in a4]))
        # the same epoch again, from the first dataset: still the same
        _assert_same_batches(a3, _collect(ds1, 3))
    # the number of workers and queue depth do not choose the batches
    back.num_workers, back.queue_size = 1, 1
    with back.build() as ds3:
        _assert_same_batches(a3, _collect(ds3, 3))


def test_different_seed_different_batches(sdata):
    with _stream_config(sdata).build() as a, _stream_config(sdata, seed=6).build() as b:
        sa = np.concatenate([x.starts for x in _collect(a, 0)])
        sb = np.concatenate([x.starts for x in _collect(b, 0)])
    assert not np.array_equal(sa, sb)


def _decode_one_hot(seqs) -> list[str]:
    s = np.asarray(seqs, dtype=np.float32)
    letters = np.array(list("ACGT"))[s.argmax(-1)]
    letters = np.where(s.sum(-1) == 0, "N", letters)
    assert np.all((s.sum(-1) == 0) | (s.sum(-1) == 1))
    return ["".join(row) for row in letters]


_COMP = str.maketrans("ACGTN", "TGCAN")


def _revcomp(s: str) -> str:
    return s.translate(_COMP)[::-1]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_build_sequences_match_fasta_and_values_match_get_batch(sdata, dtype):
    cfg = _stream_config(sdata, dtype=dtype, center_bin_to_predict=None, window_size=1, tracks=None,
                         batches_per_epoch=4)
    fa = pyfaidx.Fasta(sdata.fasta, as_raw=True)
    coll = BigWigCollection(sdata.bigwig_paths, scaling=cfg.scaling)
    n_rc = n_fwd = 0
    try:
        with cfg.build() as ds:
            assert ds.track_names == sdata.track_names
            for batch in _collect(ds, 1):
                B = cfg.batch_size
                assert batch.sequences.shape == (B, cfg.sequence_length, 4)
                assert batch.values.shape == (B, cfg.sequence_length, len(sdata.bigwig_paths))
                assert batch.sequences.dtype.name == dtype and batch.values.dtype.name == dtype
                np.testing.assert_array_equal(batch.ends - batch.starts, cfg.sequence_length)
                np.testing.assert_array_equal(batch.target_starts, batch.starts)
                for i, seq in enumerate(_decode_one_hot(batch.sequences)):
                    c, s, e = str(batch.chromosomes[i]), int(batch.starts[i]), int(batch.ends[i])
                    assert 0 <= s < e <= sdata.chrom_sizes[c]
                    ref = str(fa[c][s:e]).upper()
                    ref = "".join(ch if ch in "ACGT" else "N" for ch in ref)
                    if batch.reverse_complement[i]:
                        n_rc += 1
                        assert seq == _revcomp(ref), f"sample {i} {c}:{s}-{e} (-)"
                    else:
                        n_fwd += 1
                        assert seq == ref, f"sample {i} {c}:{s}-{e} (+)"
                expected = coll.get_batch(batch.chromosomes, batch.target_starts, batch.target_ends,
                                          window_size=cfg.window_size, reduce=cfg.reduce,
                                          default_value=cfg.default_value, dtype=cfg.dtype,
                                          tracks=batch.track_indices)
                rc = batch.reverse_complement
                expected[rc] = expected[rc, ::-1, :]
                assert_equal_values(batch.values, expected)
    finally:
        coll.close()
        fa.close()
    assert n_rc > 0 and n_fwd > 0


def test_build_values_match_pybigwig(sdata):
    """An oracle that is not ours: window 1, no scaling, default 0, forward strand."""
    cfg = _stream_config(sdata, center_bin_to_predict=None, window_size=1, tracks=None, scaling=None,
                         default_value=0.0, reverse_complement=False, batches_per_epoch=2,
                         reference_genome=None)
    bws = [pyBigWig.open(p) for p in sdata.bigwig_paths]
    try:
        with cfg.build() as ds:
            for batch in _collect(ds, 0):
                assert batch.sequences is None
                for i in range(batch.batch_size):
                    c, s, e = str(batch.chromosomes[i]), int(batch.starts[i]), int(batch.ends[i])
                    for t, bw in enumerate(bws):
                        if c in bw.chroms():
                            want = np.nan_to_num(np.asarray(bw.values(c, s, e, numpy=True), np.float32), nan=0.0)
                        else:
                            want = np.zeros(e - s, np.float32)
                        np.testing.assert_array_equal(batch.values[i, :, t], want, err_msg=f"{c}:{s}-{e} track {t}")
    finally:
        for bw in bws:
            bw.close()


def test_build_center_bin_and_window_shape(sdata):
    cfg = _stream_config(sdata, sequence_length=1000, center_bin_to_predict=320, window_size=32, tracks=2,
                         batches_per_epoch=3, reduce="max")
    coll = BigWigCollection(sdata.bigwig_paths, scaling=cfg.scaling)
    try:
        with cfg.build() as ds:
            batches = _collect(ds, 0)
            assert len(batches) == len(ds) == 3
            for b in batches:
                assert b.values.shape == (cfg.batch_size, 320 // 32, 2)
                assert b.sequences.shape == (cfg.batch_size, 1000, 4)
                np.testing.assert_array_equal(b.target_starts - b.starts, (1000 - 320) // 2)
                np.testing.assert_array_equal(b.target_ends - b.target_starts, 320)
                assert len(b.track_indices) == 2 and len(b.track_names) == 2
                assert list(b.track_names) == [sdata.track_names[i] for i in b.track_indices]
                expected = coll.get_batch(b.chromosomes, b.target_starts, b.target_ends, window_size=32,
                                          reduce="max", default_value=cfg.default_value,
                                          tracks=b.track_indices)
                expected[b.reverse_complement] = expected[b.reverse_complement, ::-1, :]
                assert_equal_values(b.values, expected)
    finally:
        coll.close()


def test_build_explicit_rank_shards(sdata):
    cfg = _stream_config(sdata, batches_per_epoch=6, reference_genome=None)
    with cfg.build() as full, cfg.build(rank=0, world_size=2) as r0, cfg.build(rank=1, world_size=2) as r1:
        f, a, b = _collect(full, 2), _collect(r0, 2), _collect(r1, 2)
    assert len(f) == 6 and len(a) == len(b) == 3
    for i in range(3):  # rank r's batch i is global batch i * world_size + r
        np.testing.assert_array_equal(a[i].starts, f[2 * i].starts)
        np.testing.assert_array_equal(b[i].starts, f[2 * i + 1].starts)
        np.testing.assert_array_equal(a[i].values, f[2 * i].values)


# -- cross-knob checks, booleans, NumPy values ------------------------------------------------------
def test_sequence_length_not_a_multiple_of_window_size_is_rejected_on_load():
    with pytest.raises(LoaderConfigError, match="window_size"):
        LoaderConfig.from_yaml("sequence_length: 1000\nwindow_size: 3\n")


def test_boolean_for_an_integer_knob_is_rejected_on_load():
    with pytest.raises(LoaderConfigError, match="batch_size"):
        LoaderConfig.from_yaml("batch_size: true\n")


def test_numpy_scaling_round_trips():
    cfg = LoaderConfig(scaling=np.array([1.0, 2.0]))
    assert LoaderConfig.from_yaml(cfg.to_yaml()).scaling == [1.0, 2.0]
