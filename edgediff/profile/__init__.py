"""Latency and memory measurements: host timing, device tools, and parsers of their output."""
