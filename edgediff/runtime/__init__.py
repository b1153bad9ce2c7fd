"""Torch-free runtime: run a converted bundle with numpy and its backend only (ONNX Runtime, LiteRT, Core ML).

Used by `edgediff generate`, `verify`, `profile`, the Jetson runner, and to write the golden files the iOS/Android
apps test against. Nothing here imports torch, diffusers or transformers (tests/test_architecture.py proves it).
"""

from edgediff.contract import Manifest
from edgediff.runtime.pipeline import BundlePipeline, GenerationResult, StageTimings
from edgediff.runtime.schedulers import TableScheduler, scheduler_tables
from edgediff.runtime.sdxl import SDXLBundlePipeline  # registers the SDXL family with BundlePipeline.load
from edgediff.runtime.sessions import SessionOptions, available_ort_providers, open_component, open_session
from edgediff.runtime.tokenizer import CLIPTokenizer

__all__ = [
    "BundlePipeline",
    "CLIPTokenizer",
    "GenerationResult",
    "Manifest",
    "SDXLBundlePipeline",
    "SessionOptions",
    "StageTimings",
    "TableScheduler",
    "available_ort_providers",
    "open_component",
    "open_session",
    "scheduler_tables",
]
