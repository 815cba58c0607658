"""bigWig header, zoom headers and total summary (UCSC bbiFile.h)."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import BigWigFormatError

from .spec import (BIGBED_MAGIC, BIGWIG_MAGIC, HEADER_FORMAT, HEADER_SIZE, MAX_UNCOMPRESS_BUF_SIZE,
                   MAX_VERSION, MAX_ZOOM_LEVELS, SUMMARY_FORMAT, SUMMARY_SIZE, ZOOM_HEADER_FORMAT,
                   ZOOM_HEADER_SIZE, swap32)

__all__ = ["Header", "ZoomLevel", "TotalSummary", "parse_header", "parse_zoom_headers", "parse_summary",
           "BIGWIG_MAGIC", "BIGBED_MAGIC", "HEADER_SIZE", "ZOOM_HEADER_SIZE", "SUMMARY_SIZE"]


@dataclass(frozen=True)
class Header:
    byteorder: str          # "<" little-endian, ">" big-endian (byte-swapped file)
    version: int
    zoom_levels: int
    chrom_tree_offset: int
    full_data_offset: int
    full_index_offset: int
    field_count: int
    defined_field_count: int
    auto_sql_offset: int
    total_summary_offset: int
    uncompress_buf_size: int
    extension_offset: int

    @property
    def compressed(self) -> bool:
        return self.uncompress_buf_size > 0


@dataclass(frozen=True)
class ZoomLevel:
    reduction_level: int
    data_offset: int
    index_offset: int


@dataclass(frozen=True)
class TotalSummary:
    bases_covered: int
    min_val: float
    max_val: float
    sum_data: float
    sum_squares: float


def parse_header(path, data: bytes, file_size: int) -> Header:
    if len(data) < 4:
        raise BigWigFormatError(path, f"file too small to be a bigWig ({file_size} bytes)")
    (magic_le,) = struct.unpack("<I", data[:4])
    if magic_le == BIGWIG_MAGIC:
        bo = "<"
    elif magic_le == swap32(BIGWIG_MAGIC):
        bo = ">"
    elif magic_le in (BIGBED_MAGIC, swap32(BIGBED_MAGIC)):
        raise BigWigFormatError(path, "this is a bigBed file, not a bigWig")
    else:
        raise BigWigFormatError(path, f"not a bigWig file (magic number 0x{magic_le:08X}, "
                                      f"expected 0x{BIGWIG_MAGIC:08X})")
    if len(data) < HEADER_SIZE:
        raise BigWigFormatError(path, f"truncated header: {len(data)} of {HEADER_SIZE} bytes")
    f = struct.unpack(bo + HEADER_FORMAT, data[:HEADER_SIZE])
    h = Header(bo, *f[1:])
    if not 1 <= h.version <= MAX_VERSION:
        raise BigWigFormatError(path, f"unsupported bigWig version {h.version}")
    for name in ("chrom_tree_offset", "full_data_offset", "full_index_offset"):
        off = getattr(h, name)
        if not HEADER_SIZE <= off < file_size:
            raise BigWigFormatError(path, f"header field {name}={off} points outside the file "
                                          f"({file_size} bytes): truncated or corrupt")
    if h.zoom_levels > MAX_ZOOM_LEVELS:
        raise BigWigFormatError(path, f"implausible number of zoom levels ({h.zoom_levels})")
    if h.uncompress_buf_size > MAX_UNCOMPRESS_BUF_SIZE:
        raise BigWigFormatError(path, f"implausible uncompressBufSize ({h.uncompress_buf_size})")
    return h


def parse_zoom_headers(path, h: Header, data: bytes, file_size: int) -> list[ZoomLevel]:
    levels = []
    for i in range(h.zoom_levels):
        red, _res, doff, ioff = struct.unpack_from(h.byteorder + ZOOM_HEADER_FORMAT, data, i * ZOOM_HEADER_SIZE)
        if doff >= file_size or ioff >= file_size:
            raise BigWigFormatError(path, f"zoom level {i} points outside the file")
        levels.append(ZoomLevel(red, doff, ioff))
    return levels


def parse_summary(h: Header, data: bytes) -> TotalSummary:
    return TotalSummary(*struct.unpack(h.byteorder + SUMMARY_FORMAT, data[:SUMMARY_SIZE]))
