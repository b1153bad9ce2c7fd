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


# Log levels of libraries that log from C/C++ or at import, set before they load (also under --debug: the
# warnings that matter are held and shown by the CLI, not printed by the libraries themselves).
QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "2", "TRANSFORMERS_VERBOSITY": "error", "DIFFUSERS_VERBOSITY": "error",
                     "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}


def quiet_environment() -> None:
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


def silence_library_noise() -> None:
    quiet_environment()
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for message, category in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
