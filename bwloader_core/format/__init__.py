"""bigWig format: bytes -> structures (header, zoom headers, chromosome B+ tree, R-tree index)."""
from .bigwig_file import SECTION_TYPES, BigWigFile
from .header import BIGBED_MAGIC, BIGWIG_MAGIC, Header, TotalSummary, ZoomLevel

__all__ = ["BigWigFile", "Header", "ZoomLevel", "TotalSummary", "SECTION_TYPES", "BIGWIG_MAGIC",
           "BIGBED_MAGIC"]
