"""bwloader: stream (batch, length, tracks) tensors from many bigWig files on CPU or GPU."""
from .collection import BigWigCollection
from .errors import BigWigFormatError, BigWigReadError
from .format import BigWigFile

__version__ = "0.1.0"

_LAZY = {
    "Batch": ".batch",
    "BigWigDataset": ".dataset",
    "LoaderConfig": ".config",
    "LoaderConfigError": ".config",
    "StreamedDataloader": ".streamed",
    "WorkerContext": ".streamed",
    "BatchProcessor": ".batch_processor",
    "QueryBatchGenerator": ".sampling",
    "ReferenceGenome": ".sequence",
    "TorchBigWigDataset": ".torch",      # imports torch (only when asked for)
}
__all__ = ["BigWigCollection", "BigWigFile", "BigWigFormatError", "BigWigReadError", "__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'bwloader_core' has no attribute {name!r}")
