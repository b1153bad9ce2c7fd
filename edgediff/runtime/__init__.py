"""Torch-free runtime: run a converted bundle with numpy and its backend only (ONNX Runtime, LiteRT, Core ML).

Used by `edgediff generate`, the Jetson runner, and to write the golden files the iOS/Android apps test
against. Nothing here imports torch, diffusers or transformers (tests/test_runtime_notorch.py proves it).
"""

from edgediff.runtime.manifest import Manifest, load_manifest
from edgediff.runtime.pipeline import BundlePipeline, GenerationResult, StageTimings
from edgediff.runtime.schedulers import TableScheduler, scheduler_tables
from edgediff.runtime.sessions import SessionOptions, available_ort_providers
from edgediff.runtime.tokenizer import CLIPTokenizer

__all__ = [
    "BundlePipeline",
    "CLIPTokenizer",
    "GenerationResult",
    "Manifest",
    "SessionOptions",
    "StageTimings",
    "TableScheduler",
    "available_ort_providers",
    "load_manifest",
    "scheduler_tables",
]
