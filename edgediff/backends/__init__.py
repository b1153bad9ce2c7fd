"""Lowering backends (the `lower` stage). See base.py for the interface and the registry."""

from edgediff.backends.base import Artifact, Backend, get_backend, register  # noqa: F401
