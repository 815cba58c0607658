"""Two ranks under torchrun (gloo, CPU): each gets its own shard of the query stream."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("torch.distributed.run")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import stream_data  # noqa: E402

from bwloader_core.config import LoaderConfig  # noqa: E402

WORLD = 2
BATCHES = 6  # global batches per epoch: 3 per rank
EPOCH = 2


def free_ports(n: int) -> list[int]:
    """n distinct free ports (all sockets held until every port is chosen)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="session")
def run_config(tmp_path_factory):
    d = tmp_path_factory.mktemp("torchrun_stream")
    data = stream_data.write_stream_data(d / "data", seed=31)
    cfg = LoaderConfig(bigwig_paths=list(data.bigwig_paths), reference_genome=data.fasta, sequence_length=500,
                       window_size=10, batch_size=8, batches_per_epoch=BATCHES, seed=17, jitter=5,
                       reverse_complement=True, tracks=2, num_workers=2, queue_size=2, threads_per_worker=1)
    path = d / "loader.yaml"
    cfg.to_yaml(path)
    return path


def start_torchrun(config_path, out_dir, port: int) -> tuple[subprocess.Popen, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD), "--nnodes", "1",
           "--master_addr", "127.0.0.1", "--master_port", str(port), "--monitor-interval", "0.1",
           str(HERE / "torchrun_worker.py"), str(config_path), str(out_dir), "--epoch", str(EPOCH)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=str(HERE.parent), start_new_session=True)
    return proc, out_dir


def finish_torchrun(proc: subprocess.Popen, out_dir: Path, timeout=120) -> list[dict]:
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its two workers (our own session)
        output, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish in {timeout} s:\n{output[-4000:]}")
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{output[-6000:]}"
    return [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(WORLD)]


@pytest.fixture(scope="session")
def two_runs(run_config, tmp_path_factory):
    """The same config run twice under torchrun (both launches at once, on their own ports)."""
    out = tmp_path_factory.mktemp("torchrun_out")
    ports = free_ports(2)
    started = [start_torchrun(run_config, out / name, port) for name, port in zip("ab", ports)]
    return tuple(finish_torchrun(p, d) for p, d in started)


def queries(record) -> list[tuple]:
    return [(c, s, e) for b in record["batches"] for c, s, e in zip(b["chromosomes"], b["starts"], b["ends"])]


def test_ranks_come_from_torch_distributed(two_runs):
    for r, rec in enumerate(two_runs[0]):
        assert rec["rank"] == rec["generator_rank"] == r
        assert rec["world_size"] == rec["generator_world_size"] == WORLD


def test_ranks_have_equal_batch_counts(two_runs):
    a = two_runs[0]
    assert a[0]["n_batches"] == a[1]["n_batches"] == BATCHES // WORLD
    assert a[0]["len"] == a[1]["len"] == BATCHES // WORLD
    assert a[0]["all_counts"] == a[1]["all_counts"] == [BATCHES // WORLD] * WORLD
    for rec in a:
        assert [b["index"] for b in rec["batches"]] == list(range(BATCHES // WORLD))
        assert all(b["epoch"] == EPOCH for b in rec["batches"])
        assert all(b["values_shape"] == [8, 50, 2] for b in rec["batches"])


def test_ranks_get_disjoint_shards(two_runs):
    r0, r1 = two_runs[0]
    g0 = {b["global_index"] for b in r0["batches"]}
    g1 = {b["global_index"] for b in r1["batches"]}
    assert g0.isdisjoint(g1) and g0 | g1 == set(range(BATCHES))
    q0, q1 = queries(r0), queries(r1)
    assert len(q0) == len(q1) == BATCHES // WORLD * 8
    assert set(q0).isdisjoint(q1)


def test_second_run_gives_identical_streams(two_runs):
    a, b = two_runs
    for ra, rb in zip(a, b):
        assert ra["batches"] == rb["batches"]  # queries, tracks, strands and value checksums


def test_shards_are_the_single_process_stream(two_runs, run_config):
    """Rank r's batch i is global batch i * WORLD + r of the same config run in one process."""
    cfg = LoaderConfig.from_yaml(run_config)      # with its FASTA: the N filter decides windows too
    with cfg.build(rank=0, world_size=1) as ds:
        ds.set_epoch(EPOCH)
        single = list(ds)
    assert len(single) == BATCHES
    for r, rec in enumerate(two_runs[0]):
        for i, b in enumerate(rec["batches"]):
            s = single[i * WORLD + r]
            assert b["chromosomes"] == s.chromosomes.tolist()
            assert b["starts"] == s.starts.tolist()
            assert b["track_indices"] == s.track_indices.tolist()
            assert b["reverse_complement"] == s.reverse_complement.tolist()
            assert np.isclose(b["values_sum"], float(s.values.astype(np.float64).sum()), rtol=0, atol=0)
