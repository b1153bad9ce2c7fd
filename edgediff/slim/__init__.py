"""Slimming steps that make a model cheaper to run on device: step distillation, pruning, and the
shared training loop they use."""
