"""The fixture files and their oracle live in `bwloader_core.testing.fixtures`; tests import them as
`data_files` (this module is that module)."""
import sys

from bwloader_core.testing import fixtures

sys.modules[__name__] = fixtures
