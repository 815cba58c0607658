"""The stages of one batch, in order: plan -> fetch (read + inflate) -> parse -> search -> fill.

Each module holds one stage: its typed input and output, its NumPy reference, its numba CPU kernel
and its numba-cuda kernels (built on first use by `cuda_kernels()`). `BatchProcessor` runs them on
the `Device` chosen at construction; `cuda_context.CudaContext` launches the CUDA ones.
"""
