"""Parsers of device benchmark tools' output: one module per tool, each turning real output into typed results
and, where the output has latency figures, into ProfileRecords. Lenient readers, strict reporters (see _common):
every version's wording, saved-file damage (BOM, CRLF, UTF-16, ANSI colours, interleaved log lines, locale numbers,
trailing garbage) is read; a recognised figure line must match in full, and a missing figure fails with a
ParseError naming a line: a truncated or garbled output never yields a number."""
