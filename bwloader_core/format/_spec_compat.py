"""The format constants that `tree_build.py` and `transcode.py` use, from `format/spec.py` when it
is there (it is landing on main), else from their current homes. Delete this file once spec.py has
landed, and import from `.spec` directly."""
# ruff: noqa: F401
try:
    from .spec import (BIGWIG_MAGIC, CHROM_TREE_HEADER_FORMAT, CHROM_TREE_HEADER_SIZE, CHROM_TREE_MAGIC,
                       HEADER_FORMAT, HEADER_SIZE, NODE_HEADER_SIZE, RTREE_HEADER_FORMAT, RTREE_HEADER_SIZE,
                       RTREE_INTERNAL_ITEM_SIZE, RTREE_LEAF_ITEM_SIZE, RTREE_MAGIC, SECTION_HEADER_SIZE,
                       SUMMARY_FORMAT, SUMMARY_SIZE, ZOOM_HEADER_FORMAT, ZOOM_HEADER_SIZE, ZOOM_RECORD_SIZE)
except ImportError:
    from .chrom_tree import CHROM_TREE_MAGIC
    from .header import _HEADER_FMT as HEADER_FORMAT
    from .header import BIGWIG_MAGIC, HEADER_SIZE, SUMMARY_SIZE, ZOOM_HEADER_SIZE
    from .rtree import RTREE_MAGIC
    from .writer import (CHROM_TREE_HEADER_SIZE, NODE_HEADER_SIZE, RTREE_HEADER_SIZE, RTREE_INTERNAL_ITEM_SIZE,
                         RTREE_LEAF_ITEM_SIZE, SECTION_HEADER_SIZE, ZOOM_RECORD_SIZE)
    CHROM_TREE_HEADER_FORMAT = "IIIIQQ"
    RTREE_HEADER_FORMAT = "IIQIIIIQII"
    SUMMARY_FORMAT = "Qdddd"
    ZOOM_HEADER_FORMAT = "IIQQ"
