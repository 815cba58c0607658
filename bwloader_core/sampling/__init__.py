"""Query sampling: regions, position and track samplers, and the sharded QueryBatchGenerator."""

from .query_batch_generator import QueryBatch, QueryBatchGenerator, distributed_rank_world_size
from .mixture import RegionSource, parse_region_mixture
from .regions import Regions, load_regions, parse_bed, subtract
from .samplers import (
    AllTracks,
    ArrayPositions,
    CustomTracks,
    FixedTracks,
    PositionSource,
    RandomTracks,
    RegionSampler,
    StreamPositions,
    TrackSampler,
    make_position_source,
    make_track_sampler,
    positions_in_regions,
)
from .strands import PairedRandomTracks, StrandPairs

__all__ = [
    "QueryBatch",
    "QueryBatchGenerator",
    "distributed_rank_world_size",
    "Regions",
    "load_regions",
    "parse_bed",
    "subtract",
    "RegionSampler",
    "PositionSource",
    "ArrayPositions",
    "StreamPositions",
    "make_position_source",
    "TrackSampler",
    "AllTracks",
    "RandomTracks",
    "FixedTracks",
    "CustomTracks",
    "make_track_sampler",
    "positions_in_regions",
    "RegionSource",
    "parse_region_mixture",
    "StrandPairs",
    "PairedRandomTracks",
]
