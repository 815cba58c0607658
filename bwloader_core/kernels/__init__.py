"""Records -> dense tensor: search, fill and window reduction."""
from .fill_numpy import fill_dense, fill_dense_reference, window_reduce

__all__ = ["fill_dense", "fill_dense_reference", "window_reduce"]
