"""Parsers of device benchmark tools' output: one module per tool, each turning real output into typed results
and, where the output has latency figures, into ProfileRecords. Recognised lines must match in full or the parse
fails with ParseError: a truncated or garbled output never yields a number."""
