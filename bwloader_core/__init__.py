"""bwloader: stream (batch, length, tracks) tensors from many bigWig files on CPU or GPU."""
from .collection import BigWigCollection
from .errors import BigWigFormatError
from .format import BigWigFile

__version__ = "0.1.0"
__all__ = ["BigWigCollection", "BigWigFile", "BigWigFormatError", "__version__"]
