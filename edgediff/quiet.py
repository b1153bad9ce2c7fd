"""Keep a user's terminal for what they must act on: the libraries edgediff drives print import-time noise
(torchao's missing CUDA kernels, torch's pytree deprecations, diffusers' optional-backend notes) that says nothing
about their model. Applied by the CLI before any command imports a library; `--debug` keeps everything."""

from __future__ import annotations

import logging
import os
import warnings

# Loggers whose warnings are about the libraries' own optional parts, never about the user's model or bundle.
NOISY_LOGGERS = ("torchao", "torch.utils._pytree", "torch._dynamo", "torch.onnx", "torch.export", "coremltools",
                 "absl", "jax._src.xla_bridge", "ai_edge_quantizer", "litert_torch")
# Python warnings raised inside libraries by other libraries' deprecations (no user action possible).
NOISY_WARNINGS = (
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
    (r"__array__ implementation doesn't accept a copy keyword", DeprecationWarning),
    (r".*is deprecated and will be removed in 7\.2", DeprecationWarning),
    (r"Warning: Enabling `experimental_preserve_all_tensors`", UserWarning),
)


def silence_library_noise() -> None:
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for message, category in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
