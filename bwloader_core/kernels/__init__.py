"""Records -> dense tensor: fill and window reduction."""
from .fill_numpy import fill_runs, fill_runs_reference, runs_disjoint, window_reduce, window_reduce_runs

__all__ = ["fill_runs", "fill_runs_reference", "runs_disjoint", "window_reduce", "window_reduce_runs"]
