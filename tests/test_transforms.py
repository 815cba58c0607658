"""Value transforms: each step against its formula, NaN, dtype rules, order, YAML, and the loader."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import stream_data  # noqa: E402

from bwloader_core import BigWigCollection  # noqa: E402
from bwloader_core.config import LoaderConfig, LoaderConfigError  # noqa: E402
from bwloader_core.dtypes import cast_output  # noqa: E402
from bwloader_core.transforms import (  # noqa: E402
    Clip,
    Log1p,
    Power,
    SoftClip,
    apply_transforms,
    apply_transforms_inplace,
    describe_transforms,
    parse_value_transforms,
    value_transforms_to_spec,
)

# float32 inputs over the interesting ranges: negatives, around thresholds, large, NaN, inf
X = np.concatenate([
    np.array([np.nan, -np.inf, -5.0, -1.0, -0.5, 0.0, 1e-7, 0.5, 1.0, 2.0, 383.9, 384.0, 384.0001,
              385.0, 388.0, 1e4, 3.4e38, np.inf]),
    np.random.default_rng(0).gamma(0.5, 200.0, 5000),
]).astype(np.float32)


def reference(x64, formula, mask=None):
    """The formula in float64 on the float32 inputs (the value it should round to)."""
    with np.errstate(all="ignore"):
        y = formula(x64)
    if mask is not None:
        y = np.where(mask(x64), y, x64)
    return y


def assert_close_f32(got, want64, maxulp=4, t=0.0):
    """Within a few float32 roundings of the float64 formula: ulps of the largest magnitude the
    float32 evaluation passes through (the input, the threshold, the result), so that a
    cancellation like -1 + sqrt(1 + x) near 0 is judged by what float32 can resolve there."""
    assert got.dtype == np.float32
    want = want64.astype(np.float32)
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    inf = np.isinf(want)
    np.testing.assert_array_equal(got[inf], want[inf])
    ok = ~nan & ~inf
    x = np.abs(X.astype(np.float64)[ok]) if len(got) == len(X) else np.abs(want64[ok])
    scale = np.maximum.reduce([np.abs(want64[ok]), np.minimum(x, 1e30), np.full(ok.sum(), abs(t))])
    err = np.abs(got[ok].astype(np.float64) - want64[ok])
    bad = err > maxulp * np.finfo(np.float32).eps * scale
    assert not bad.any(), f"{bad.sum()} value(s) off, e.g. got {got[ok][bad][:3]} want {want64[ok][bad][:3]}"


# -- each step against its formula ------------------------------------------------------------------
def test_clip_max_and_min():
    x64 = X.astype(np.float64)
    assert_close_f32(Clip(max=100).apply(X), reference(x64, lambda x: np.minimum(x, 100.0)), maxulp=0)
    assert_close_f32(Clip(max=100, min=-1).apply(X), reference(x64, lambda x: np.clip(x, -1.0, 100.0)), maxulp=0)


@pytest.mark.parametrize("t", [0.0, 3.5, 384.0])
def test_soft_clip_basenji_formula(t):
    x64 = X.astype(np.float64)
    got = SoftClip(threshold=t).apply(X)
    assert_close_f32(got, reference(x64, lambda x: t + np.sqrt(x - t), lambda x: x > t), t=t)
    if t == 384.0:
        assert got[X == np.float32(388)][0] == 386.0   # 384 + sqrt(4), exactly


def test_soft_clip_exact_values_and_continuity():
    x = np.array([383.0, 384.0, 388.0, 400.0, 1e4], np.float32)
    np.testing.assert_array_equal(SoftClip(384).apply(x), np.float32([383.0, 384.0, 386.0, 388.0, 384.0 + np.sqrt(9616.0)]))
    # borzoi: t - 1 + sqrt(x - t + 1): 384 + 8 -> 383 + 3
    np.testing.assert_array_equal(SoftClip(384, style="borzoi").apply(np.float32([392.0, 384.0])), [386.0, 384.0])


def test_soft_clip_borzoi_formula():
    x64 = X.astype(np.float64)
    got = SoftClip(threshold=384, style="borzoi").apply(X)
    assert_close_f32(got, reference(x64, lambda x: 383.0 + np.sqrt(x - 383.0), lambda x: x > 384.0), t=384)


def test_power_everywhere_and_above_threshold():
    x64 = X.astype(np.float64)
    assert_close_f32(Power(0.75).apply(X), reference(x64, lambda x: x ** 0.75))   # x < 0 -> NaN
    assert np.isnan(Power(0.75).apply(np.float32([-2.0]))).all()
    assert_close_f32(Power(0.75, threshold=10).apply(X),
                     reference(x64, lambda x: 10.0 + (x - 10.0) ** 0.75, lambda x: x > 10.0), t=10)
    # threshold -1 is Borzoi's -1 + (1 + x) ** p squash
    assert_close_f32(Power(0.5, threshold=-1).apply(X),
                     reference(x64, lambda x: -1.0 + np.sqrt(1.0 + x), lambda x: x > -1.0), t=1)
    assert Power(2, threshold=1).apply(np.float32([4.0]))[0] == 10.0   # 1 + 3 ** 2


def test_log1p_formula():
    x64 = X.astype(np.float64)
    assert_close_f32(Log1p().apply(X), reference(x64, np.log1p), maxulp=2)
    np.testing.assert_array_equal(Log1p().apply(np.float32([-1.0, 0.0])), [-np.inf, 0.0])


@pytest.mark.parametrize("step", [Clip(5), SoftClip(1), Power(0.5), Power(0.75, threshold=1), Log1p()])
def test_nan_passes_through_and_no_warning(step, recwarn):
    x = np.float32([np.nan, 2.0, np.nan, -3.0])
    y = step.apply(x)
    assert np.isnan(y[[0, 2]]).all()
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_steps_only_use_the_array_module_they_are_given():
    """The GPU path hands CuPy as xp: a step may use only xp's functions, never NumPy's directly."""
    used = []

    def wrap(name):
        def f(*a, **k):
            used.append(name)
            return getattr(np, name)(*a, **k)
        return f
    xp = types.SimpleNamespace(**{n: wrap(n) for n in ("minimum", "maximum", "sqrt", "where", "log1p")})
    steps = parse_value_transforms([{"step": "power", "exponent": 0.75, "threshold": -1},
                                    {"step": "soft_clip", "threshold": 3}, {"step": "clip", "max": 5, "min": 0},
                                    "log1p"])
    x = X[:100]
    want = apply_transforms(x, steps, np)
    got = apply_transforms(x, steps, xp)
    np.testing.assert_array_equal(got, want)
    assert set(used) == {"minimum", "maximum", "sqrt", "where", "log1p"}


@pytest.mark.parametrize("step", [Clip(100), Clip(100, min=-0.5), SoftClip(0), SoftClip(384), SoftClip(1e9),
                                  SoftClip(-10), SoftClip(384, style="borzoi"), Power(0.75), Power(1.5),
                                  Power(0.75, threshold=-1), Power(0.5, threshold=-1e9), Power(0.5, threshold=50),
                                  Power(2, threshold=1e9), Log1p()], ids=lambda s: s.describe())
def test_in_place_cpu_path_equals_the_reference_bit_for_bit(step):
    """The loader's in-place path (only the values above a threshold touched, or all at once)
    gives exactly the reference's float32 result, NaN and infinities included."""
    for x in (X.reshape(2, -1, 1), np.abs(X[np.isfinite(X)]).reshape(-1, 1)):
        want = step.apply(x.copy(), np)
        got = x.copy()
        step.apply_inplace(got)
        np.testing.assert_array_equal(got, want)
    chain = [Power(0.75, threshold=-1), SoftClip(384), Clip(768), Log1p()]
    got = apply_transforms_inplace(X.copy(), chain)
    np.testing.assert_array_equal(got, apply_transforms(X, chain))
    with pytest.raises(ValueError, match="C-contiguous float32"):
        apply_transforms_inplace(X.astype(np.float64), chain)


# -- dtypes ---------------------------------------------------------------------------------------------
def test_float32_stays_float32_precision():
    """float32 constants: no silent float64 (0.1 in float64 would give another rounding)."""
    x = np.float32([1.1, 2.2, 3.3])
    got = Power(0.1).apply(x)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, x ** np.float32(0.1))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_narrow_dtypes_transform_float32_then_round_once(dtype):
    steps = parse_value_transforms([{"step": "power", "exponent": 0.75}, {"step": "soft_clip", "threshold": 50}])
    x32 = np.abs(X[np.isfinite(X) & (np.abs(X) < 6e4)])[:2000]
    want = cast_output(apply_transforms(x32, steps), dtype)
    narrow = x32.astype(np.float16 if dtype == "float16" else ml_dtypes.bfloat16)
    got = apply_transforms(narrow, steps)           # widened, transformed, rounded once
    assert got.dtype == narrow.dtype
    wide_again = cast_output(apply_transforms(narrow.astype(np.float32), steps), dtype)
    np.testing.assert_array_equal(got.astype(np.float32), wide_again.astype(np.float32))
    assert want.dtype == got.dtype


# -- order, parsing, YAML -----------------------------------------------------------------------------
def test_order_of_steps_matters():
    x = np.float32([0.0, 3.0, 50.0, 1e3])
    a = apply_transforms(x, [{"step": "clip", "max": 10}, "log1p"])
    b = apply_transforms(x, ["log1p", {"step": "clip", "max": 10}])
    np.testing.assert_array_equal(a, np.log1p(np.minimum(x, np.float32(10))))
    np.testing.assert_array_equal(b, np.minimum(np.log1p(x), np.float32(10)))
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("spec, message", [
    ([{"step": "softclip", "threshold": 3}], "did you mean 'soft_clip'"),
    ([{"step": "soft_clip", "treshold": 3}], "did you mean 'threshold'"),
    ([{"step": "soft_clip"}], "needs threshold"),
    ([{"step": "power", "exponent": 0}], "exponent must be > 0"),
    ([{"step": "power", "exponent": "0.5"}], "finite number"),
    ([{"step": "clip", "max": 1, "min": 2}], "above max"),
    ([{"step": "clip", "max": float("nan")}], "finite number"),
    ([{"step": "soft_clip", "threshold": 1, "style": "borzio"}], "did you mean 'borzoi'"),
    ([{"exponent": 2}], "missing 'step'"),
    ([3], "a step is a mapping"),
    ("{step: clip}", "must be a list"),
])
def test_bad_steps_are_refused_clearly(spec, message):
    if isinstance(spec, str):
        with pytest.raises(LoaderConfigError, match="clip needs max"):
            LoaderConfig.from_yaml("value_transforms: [" + spec + "]")
        return
    with pytest.raises(ValueError, match=message):
        parse_value_transforms(spec)
    with pytest.raises(LoaderConfigError, match=message.replace("(", r"\(")):
        LoaderConfig(value_transforms=spec).validate()


def test_yaml_round_trip_keeps_steps_and_order(tmp_path):
    steps = [{"step": "power", "exponent": 0.75, "threshold": -1.0}, {"step": "soft_clip", "threshold": 384.0},
             {"step": "clip", "max": 768.0, "min": -768.0}, "log1p"]
    cfg = LoaderConfig(value_transforms=steps)
    path = tmp_path / "t.yaml"
    cfg.to_yaml(path)
    back = LoaderConfig.from_yaml(path)
    assert back.value_transforms == steps
    assert parse_value_transforms(back.value_transforms) == parse_value_transforms(steps)
    # step objects from Python are written as their specs
    obj = LoaderConfig(value_transforms=[Power(0.75, threshold=-1), SoftClip(384, style="borzoi"), Log1p()])
    again = LoaderConfig.from_yaml(obj.to_yaml())
    assert again.value_transforms == [{"step": "power", "exponent": 0.75, "threshold": -1.0},
                                      {"step": "soft_clip", "threshold": 384.0, "style": "borzoi"},
                                      {"step": "log1p"}]
    assert value_transforms_to_spec(again.value_transforms) == again.value_transforms
    assert describe_transforms(steps) == "power(0.75, above -1) -> soft_clip(t=384) -> clip(max=768, min=-768) -> log1p"


# -- in the loader ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sdata(tmp_path_factory):
    return stream_data.write_stream_data(tmp_path_factory.mktemp("transform_stream"), seed=5)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_loader_applies_transforms_to_every_batch(sdata, dtype):
    steps = [{"step": "power", "exponent": 0.75, "threshold": 0.5}, {"step": "soft_clip", "threshold": 2.0},
             {"step": "clip", "max": 2.5}]
    kw = dict(bigwig_paths=sdata.bigwig_paths, sequence_length=512, window_size=16, reduce="sum",
              batch_size=8, batches_per_epoch=3, num_workers=2, dtype=dtype, reverse_complement=True, seed=2)
    plain = LoaderConfig(**kw).build()
    with_t = LoaderConfig(value_transforms=steps, **kw).build()
    changed = 0
    with BigWigCollection(sdata.bigwig_paths) as coll:
        for a, b in zip(plain, with_t):
            ref = coll.get_batch(a.chromosomes, a.target_starts, a.target_ends, window_size=16, reduce="sum")
            ref[a.reverse_complement] = ref[a.reverse_complement, ::-1]
            want = cast_output(apply_transforms(ref, steps), dtype)
            assert b.values.dtype == want.dtype
            np.testing.assert_array_equal(b.values.astype(np.float32), want.astype(np.float32))
            np.testing.assert_array_equal(a.starts, b.starts)
            changed += int((a.values.astype(np.float32) != b.values.astype(np.float32)).sum())
            assert "transform" in b.timings
    plain.close()
    with_t.close()
    assert changed > 0
