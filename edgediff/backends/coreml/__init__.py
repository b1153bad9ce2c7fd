"""The Core ML backend: `backend.py` lowers components to ML programs (attention rewrite `attention.py`, UNet chunks
and keep-float weights `pieces.py`, Apple's Swift layout `swift.py`); `package_info.py` reads saved packages
without loading weights for the structural checks that stand in for predictions on Linux."""

from edgediff.backends.coreml.backend import CoreMLBackend, CoreMLOptions
from edgediff.backends.coreml.package_info import inspect_package, read_package_io

__all__ = ["CoreMLBackend", "CoreMLOptions", "inspect_package", "read_package_io"]
