"""Run by tests/test_torchrun.py under `python -m torch.distributed.run --nproc_per_node N`.

    torchrun_worker.py CONFIG_YAML OUT_DIR [--epoch E]

Initialises torch.distributed (gloo, CPU), builds the LoaderConfig from CONFIG_YAML WITHOUT passing
rank/world_size (the generator must take them from torch.distributed), iterates one epoch and
writes OUT_DIR/rank{R}.json with this rank's queries.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch.distributed as dist

from bwloader_core.config import LoaderConfig


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("out_dir")
    ap.add_argument("--epoch", type=int, default=0)
    args = ap.parse_args()

    dist.init_process_group("gloo")
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        assert rank == int(os.environ["RANK"]) and world == int(os.environ["WORLD_SIZE"])
        cfg = LoaderConfig.from_yaml(args.config)
        with cfg.build() as ds:  # no rank/world_size: they come from torch.distributed
            gen = ds.generator
            ds.set_epoch(args.epoch)
            batches = []
            for b in ds:
                batches.append(dict(
                    index=b.index, epoch=b.epoch, global_index=gen.global_index(b.index),
                    chromosomes=b.chromosomes.tolist(), starts=b.starts.tolist(), ends=b.ends.tolist(),
                    target_starts=b.target_starts.tolist(), track_indices=b.track_indices.tolist(),
                    reverse_complement=b.reverse_complement.tolist(),
                    values_sum=float(b.values.astype("float64").sum()),
                    values_shape=list(b.values.shape),
                ))
            record = dict(rank=rank, world_size=world, generator_rank=gen.rank,
                          generator_world_size=gen.world_size, len=len(ds), n_batches=len(batches),
                          batches=batches)
        # every rank finished its epoch before anyone reports (and gloo works both ways)
        counts = [None] * world
        dist.all_gather_object(counts, len(batches))
        record["all_counts"] = counts
        out = Path(args.out_dir) / f"rank{rank}.json"
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(out)
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
