"""Load models and split them into export-ready components (the `load` stage)."""
