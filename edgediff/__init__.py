"""edgediff: take a diffusion model to phones and edge boards.

The stages are visible in the layout: model (load) -> slim -> backends (lower) -> verify -> profile -> bundle.
"""

__version__ = "0.1.0"
