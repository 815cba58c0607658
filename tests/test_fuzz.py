"""Fuzzing the reader with mutated real files (the engine is scripts/fuzz_campaign.py).

Seed files: pyBigWig-written files, the pyBigWig wheel's test.bw, our writer's big-endian,
uncompressed, version-1, deep-R-tree and many-chromosome files (small ones and the suite's
fixtures). Mutations: truncation at every structure boundary, byte flips per structure, flips in
inflated blocks re-deflated (garbage that inflates fine), deflate flips with the adler32 fixed,
forged counts/offsets/sizes, cycles in both trees, and flips of bytes no value depends on.

Allowed: arrays of the right shape and dtype (the intact file's values for the "inert" mutations),
or BigWigFormatError naming the file. Cases run in worker subprocesses, each under SIGALRM, so a
segfault or a hang is caught and reported with its case and a saved reproducer.

Bugs the fuzzer found in the core have their own tests below (strict xfail while open; the fixed
ones stay as regression tests). Outcomes of open bugs are recognised by `fuzz_campaign.known_bug`
and do not fail the random campaign.
"""
from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest

from bwloader_core import BigWigCollection, BigWigFormatError

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("fuzz_campaign", ROOT / "scripts" / "fuzz_campaign.py")
fc = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("fuzz_campaign", fc)
_spec.loader.exec_module(fc)

CAMPAIGN_SEED = 20240611
RANDOM_CASES = 3000   # + the truncation sweep (~1,400 cases)
CI_FAMILIES = list(fc.FAMILIES)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz_corpus")
    fc.build_corpus(d)
    return d


@pytest.fixture(scope="module")
def seeds(corpus):
    return {s.name: s for s in fc.corpus_seeds(corpus)}


def _report(summary) -> str:
    lines = []
    for d in summary["disallowed"][:20]:
        lines.append(f"case {d['case']} [{d['outcome']}] {d['family']} on {d['seed_file']}: {d['desc']}\n"
                     f"    {str(d['detail'])[:400]}\n    reproducer: {d['reproducer']}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def random_campaign(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz_random")
    return fc.run_campaign(RANDOM_CASES, CAMPAIGN_SEED, out, corpus=corpus, jobs=2, chunk=RANDOM_CASES // 2,
                           families=CI_FAMILIES, case_timeout=20)


@pytest.fixture(scope="module")
def sweep_campaign(corpus, seeds, tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz_sweep")
    n = len(fc.sweep_cuts(list(seeds.values())))
    return fc.run_campaign(n, CAMPAIGN_SEED, out, corpus=corpus, jobs=2, chunk=n // 2 + 1,
                           families=[fc.SWEEP], case_timeout=20)


# ------------------------------------------------------------------------------------ campaigns
def test_random_mutants_give_values_or_a_format_error(random_campaign):
    s = random_campaign
    assert s["cases"] == RANDOM_CASES
    new = [d for d in s["disallowed"] if not d.get("known_bug")]
    assert not new, f"{len(new)} disallowed outcome(s):\n" + _report(dict(s, disallowed=new))


def test_every_mutation_family_is_exercised(random_campaign):
    fams = random_campaign["by_family"]
    assert set(fams) == set(CI_FAMILIES)
    for f, c in fams.items():
        assert sum(c.values()) >= (10 if f == "fanout_cycle" else 60), (f, c)
    total = random_campaign["outcomes"]
    # the mix shows the mutants are neither all rejected at the magic nor all harmless
    assert total.get("ok", 0) > RANDOM_CASES // 5 and total.get("error", 0) > RANDOM_CASES // 5, total
    assert len(random_campaign["error_kinds"]) >= 25, random_campaign["error_kinds"]
    # garbage that inflates fine reaches the section parser, not just zlib
    assert fams["inflated_flip"].get("ok", 0) > 0 and fams["forge_section"].get("error", 0) > 0


def test_inert_mutations_keep_the_values(random_campaign):
    """Flips in zoom levels, the summary, node padding, unused header fields: the values of the
    intact file or a format error, never other values (checked per case in the campaign)."""
    s = random_campaign
    assert s["inert_cases"] >= 100
    assert s["by_family"]["inert"].get("ok", 0) >= s["inert_cases"] // 2
    assert not [d for d in s["disallowed"] if d["family"] == "inert"]


def test_truncation_at_every_structure_boundary(sweep_campaign):
    s = sweep_campaign
    assert s["cases"] >= 1000
    new = [d for d in s["disallowed"] if not d.get("known_bug")]
    assert not new, _report(dict(s, disallowed=new))
    assert s["outcomes"].get("error", 0) > s["cases"] * 0.8   # most cuts lose needed structures


# ------------------------------------------------------------------------------------ the harness
@pytest.mark.parametrize("family, outcome", [
    ("selftest_crash", "DISALLOWED:crash(signal 11)"),
    ("selftest_hang", "DISALLOWED:hang"),
    ("selftest_hang_hard", "DISALLOWED:hang"),
    ("selftest_exception", "DISALLOWED:IndexError"),
])
def test_harness_reports_crashes_hangs_and_exceptions(corpus, tmp_path, family, outcome):
    """A segfault, a hang (also one SIGALRM cannot interrupt) and a stray exception are each
    reported with their case and a reproducer file, and the campaign goes on after them."""
    n = 1 if family == "selftest_hang_hard" else 2
    s = fc.run_campaign(n, 1, tmp_path, corpus=corpus, jobs=1, chunk=n, families=[family], case_timeout=1)
    assert s["cases"] == n
    assert [d["outcome"] for d in s["disallowed"]] == [outcome] * n, s["disallowed"]
    for d in s["disallowed"]:
        assert Path(d["reproducer"]).is_file() and Path(d["reproducer"]).with_suffix(".txt").is_file()
        assert d["known_bug"] is None


def test_case_generation_is_deterministic(seeds):
    ss = list(seeds.values())
    a = [fc.make_case(ss, 5, i) for i in range(60)]
    b = [fc.make_case(ss, 5, i) for i in range(60)]
    assert [(x[1].data, x[1].desc, x[2]) for x in a] == [(y[1].data, y[1].desc, y[2]) for y in b]
    assert len({x[1].data for x in a}) > 50


def test_adler_fixed_mutants_inflate(seeds):
    """The deflate-flip mutation really produces streams that zlib accepts (most of the time)."""
    s = seeds["small_ours_zlib"]
    ok = 0
    for i in range(40):
        m = fc.mutate(s, "deflate_adler", np.random.default_rng([9, i]))
        if "adler32 fixed" in m.desc:
            k = int(m.desc.split()[1])
            o, z = s.leaves[k]
            zlib.decompress(m.data[o:o + z])
            ok += 1
    assert ok >= 10


# ------------------------------------------------------------------------------------ known bugs
def _isolated(path, chrom, start, end, timeout=20, mem_gb=4.0) -> dict:
    """Open `path` and read [start, end) of `chrom` in a subprocess with an address-space limit:
    returns dict(outcome='values'|'BigWigFormatError'|<exception name>|'timeout'|'crash', message)."""
    code = textwrap.dedent(f"""
        import json, resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({int(mem_gb * 2**30)}, resource.RLIM_INFINITY))
        from bwloader_core import BigWigCollection, BigWigFormatError
        try:
            c = BigWigCollection([{str(path)!r}], n_threads=2)
            v = c.get_batch([{chrom!r}], [{start}], [{end}])
            r = dict(outcome="values", message=str(v.shape))
        except BaseException as e:
            r = dict(outcome=type(e).__name__, message=str(e)[:500])
        print(json.dumps(r))
    """)
    try:
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(outcome="timeout", message=f"no answer within {timeout} s")
    if p.returncode != 0:
        return dict(outcome="crash", message=f"exit {p.returncode}: {p.stderr[-500:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _first_leaf_range(s):
    """(chrom name, 0, 4000): the chromosome of data block 0 of small seed s."""
    sc = struct.unpack_from(s.bo + "I", s.raw, s.leaf_items[0])[0]
    names = {}
    for off, is_leaf, cnt, ks in s.chrom_nodes:
        if is_leaf:
            for k in range(cnt):
                item = off + 4 + k * (ks + 8)
                name = s.raw[item:item + ks].rstrip(b"\0").decode()
                names[struct.unpack_from(s.bo + "I", s.raw, item + ks)[0]] = name
    return names[sc], 0, 4000   # the whole chromosome (the small seeds' are <= 4 kb)


@pytest.mark.parametrize("ubs", [1, 8])
def test_uncompress_buf_size_smaller_than_the_blocks_is_a_format_error(seeds, tmp_path, ubs):
    """Found by the fuzzer (fixed in a54f7b2): with partial inflate a block could inflate past its
    uncompressBufSize slot: IndexError in parse_section_headers."""
    s = seeds["small_pybigwig_bedgraph"]
    b = bytearray(s.raw)
    struct.pack_into(s.bo + "I", b, 52, ubs)
    p = tmp_path / f"small_ubs_{ubs}.bw"
    p.write_bytes(bytes(b))
    with pytest.raises(BigWigFormatError) as ei:
        with BigWigCollection([str(p)], n_threads=1) as c:
            c.get_batch(["chrB"] * 3, [0, 500, 1000], [800, 1300, 1800])
    assert str(p) in str(ei.value)


def test_huge_uncompress_buf_size_is_a_format_error(seeds, tmp_path):
    """Found by the fuzzer (fixed in a54f7b2): uncompressBufSize up to 2^30 sized the inflate buffer
    (blocks x uncompressBufSize): MemoryError."""
    s = seeds["fixture_deep_rtree"]
    b = bytearray(s.raw)
    struct.pack_into(s.bo + "I", b, 52, 1 << 30)
    p = tmp_path / "huge_ubs.bw"
    p.write_bytes(bytes(b))
    r = _isolated(p, "chr1", 0, 200_000)
    assert r["outcome"] in ("values", "BigWigFormatError"), r
    if r["outcome"] == "BigWigFormatError":
        assert str(p) in r["message"]


@pytest.mark.parametrize("tree, fanout", [("rtree", 4000), ("chrom", 40000)])
def test_wide_cycle_in_a_tree_is_a_format_error(seeds, tmp_path, tree, fanout):
    """Found by the fuzzer (fixed in f9f178b): children all pointing back at their node made the child
    list grow quadratically before the visit-count guard tripped (MemoryError or minutes)."""
    s = seeds["small_ours_zlib"]
    p = tmp_path / f"fanout_{tree}.bw"
    p.write_bytes(fc.fanout_bytes(s, tree, fanout))
    r = _isolated(p, "chrA", 0, 100, timeout=5)
    assert r["outcome"] == "BigWigFormatError" and str(p) in r["message"], r


def test_leaf_size_over_2_63_is_a_format_error(seeds, tmp_path):
    """Found by the fuzzer (fixed in f9f178b): a leaf dataSize >= 2^63 was negative as int64 and
    passed the past-the-end check; uncompressed files then failed with ValueError."""
    s = seeds["small_ours_raw"]
    b = bytearray(s.raw)
    struct.pack_into(s.bo + "Q", b, s.leaf_items[0] + 24, 1 << 63)
    p = tmp_path / "neg_size.bw"
    p.write_bytes(bytes(b))
    chrom, a, e = _first_leaf_range(s)
    with pytest.raises(BigWigFormatError) as ei:
        with BigWigCollection([str(p)], n_threads=1) as c:
            c.get_batch([chrom], [a], [e])
    assert str(p) in str(ei.value)


def test_too_many_sections_names_the_file(seeds, tmp_path):
    """Found by the fuzzer (fixed in f9f178b): the error said '<batch>' instead of the path."""
    s = seeds["small_ours_raw"]
    b = bytearray(s.raw)
    cid = struct.unpack_from(s.bo + "I", s.raw, s.leaf_items[0])[0]
    fc._replace_block(s, b, 0, struct.pack(s.bo + "IIIIIBBH", cid, 0, 10, 0, 0, 1, 0, 0) * 65537)
    p = tmp_path / "many_sections.bw"
    p.write_bytes(bytes(b))
    chrom, a, e = _first_leaf_range(s)
    with pytest.raises(BigWigFormatError) as ei:
        with BigWigCollection([str(p)], n_threads=1) as c:
            c.get_batch([chrom], [a], [e])
    assert str(p) in str(ei.value)


def test_no_open_known_bugs_hide_findings(seeds):
    """Every bug the fuzzer found is fixed: no outcome is excused as a known bug."""
    s = seeds["small_ours_zlib"]
    b = bytearray(s.raw)
    struct.pack_into("<I", b, 52, 1 << 29)
    for out in ("DISALLOWED:MemoryError", "DISALLOWED:ValueError", "DISALLOWED:IndexError"):
        assert fc.known_bug({"outcome": out}, fc.Mutant("flip_header", bytes(b), "leaf3.size: 1 -> 9223372036854775808"),
                            s) is None
    assert fc.KNOWN_BUGS == {}
