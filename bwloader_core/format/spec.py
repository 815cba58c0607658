"""The bigWig format's constants, defined once (UCSC bbiFile.h / bwgInternal.h).

The reader (`format/`), the writer (`format/writer.py`), the fetch and parse stages and the fuzzer
all import these; nothing else spells a magic number or a structure size.
"""
from __future__ import annotations

import numpy as np

# magic numbers (as read little-endian; a byte-swapped magic means a big-endian file)
BIGWIG_MAGIC = 0x888FFC26
BIGBED_MAGIC = 0x8789F2EB
CHROM_TREE_MAGIC = 0x78CA8C91
RTREE_MAGIC = 0x2468ACE0

# fixed structure sizes, in bytes
HEADER_SIZE = 64
HEADER_FORMAT = "IHHQQQHHQQIQ"      # magic, version, zoomLevels, chromTreeOffset, fullDataOffset,
#                                     fullIndexOffset, fieldCount, definedFieldCount, autoSqlOffset,
#                                     totalSummaryOffset, uncompressBufSize, extensionOffset
ZOOM_HEADER_SIZE = 24
ZOOM_HEADER_FORMAT = "IIQQ"         # reductionLevel, reserved, dataOffset, indexOffset
SUMMARY_SIZE = 40
SUMMARY_FORMAT = "Qdddd"            # basesCovered, minVal, maxVal, sumData, sumSquares
CHROM_TREE_HEADER_SIZE = 32
CHROM_TREE_HEADER_FORMAT = "IIIIQQ"  # magic, blockSize, keySize, valSize, itemCount, reserved
RTREE_HEADER_SIZE = 48
RTREE_HEADER_FORMAT = "IIQIIIIQII"  # magic, blockSize, itemCount, startChrom, startBase, endChrom,
#                                     endBase, endFileOffset, itemsPerSlot, reserved
NODE_HEADER_SIZE = 4
NODE_HEADER_FORMAT = "BBH"          # isLeaf, reserved, count
RTREE_LEAF_ITEM_SIZE = 32
RTREE_INTERNAL_ITEM_SIZE = 24
ZOOM_RECORD_SIZE = 32
ZOOM_RECORD_FORMAT = "IIIIffff"     # chromId, start, end, validCount, min, max, sum, sumSquares
MAX_UNCOMPRESS_BUF_SIZE = 1 << 30   # larger is implausible (a forged header)
MAX_ZOOM_LEVELS = 64
MAX_VERSION = 10

# data sections
SECTION_HEADER_SIZE = 24
SECTION_HEADER_FORMAT = "IIIIIBBH"  # chromId, start, end, itemStep, itemSpan, type, reserved, itemCount
SECTION_HEADER_WORDS = SECTION_HEADER_SIZE // 4
BEDGRAPH, VARSTEP, FIXEDSTEP = 1, 2, 3
SECTION_TYPES = {BEDGRAPH: "bedGraph", VARSTEP: "variableStep", FIXEDSTEP: "fixedStep"}
ITEM_BYTES = (0, 12, 8, 4)          # by section type: (start, end, value), (start, value), (value)
ITEM_WORDS = np.array([0, 3, 2, 1], np.int64)
VALUE_WORD = np.array([0, 2, 1, 0], np.int64)   # word of the value inside an item
MAX_SECTIONS_PER_BLOCK = 1 << 16

# zlib stream framing around a raw Deflate payload (RFC 1950): 2-byte header, 4-byte Adler-32 trailer
ZLIB_HEADER_BYTES = 2
ZLIB_TRAILER_BYTES = 4


def swap32(x: int) -> int:
    """A 32-bit value with its bytes reversed (the magic number of a big-endian file)."""
    return int.from_bytes(x.to_bytes(4, "little"), "big")
