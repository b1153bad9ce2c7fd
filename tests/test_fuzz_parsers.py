"""Property-based fuzzing of every device-tool parser (hypothesis).

Inputs are built from fragments of the real outputs in the shared fixtures (whole lines, shuffled, repeated,
mutated), then truncated, salted with binary garbage, huge numbers and NaN/inf spellings. The property: a parser
returns or raises its typed error (ParseError), nothing else, and never takes more than a second (no
pathological regex). `to_record` is driven too wherever a parse succeeds. Derandomized, so CI sees the same
examples every run; FUZZ_EXAMPLES raises the count and FUZZ_RANDOM=1 draws fresh examples, for a longer local hunt.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgediff.errors import ParseError
from edgediff.profile.parsers import (
    android_dumpsys,
    app_report,
    litert_benchmark,
    mlperf,
    ort_perf_test,
    ort_profile,
    qaihm,
    tegrastats,
    tflite_benchmark,
    trtexec,
)
from tests.test_parsers import FIXTURES, fx

pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"fixtures folder not found ({FIXTURES})")

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("FUZZ_RANDOM"), database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# A hang guard, not a speed figure: backtracking on a 200k-character input takes minutes, a linear parse a fraction
# of a second on a quiet machine (seen: 2 s with two conversions running beside it).
SECONDS = 10.0

VARIANTS = Path(__file__).resolve().parent / "fixtures" / "parsers"


def _record(parse, to_record):
    """parse, then to_record on what it returned (lists: every item), as the importer does."""
    def run(text: str):
        parsed = parse(text)
        for item in parsed if isinstance(parsed, list) else [parsed]:
            to_record(item, component="c")
    return run


def _tflite(text: str) -> None:
    for run in tflite_benchmark.parse_benchmark_model(text):
        if run.complete:
            tflite_benchmark.to_record(run, component="c")


def _trtexec_summary(text: str) -> None:
    trtexec.to_record(trtexec.parse_trtexec_log(text), component="c")


def _app(text: str) -> None:
    app_report.to_records(app_report.parse_app_report(text))


# parser name -> (the call, the real texts its fragments come from)
TARGETS = {
    "benchmark_model": (_tflite, ["tflite_benchmark_model_gpu_opprofiling_v2.4era.txt",
                                  "tflite_benchmark_model_cros_selected_lines.txt",
                                  "tflite_benchmark_model_memory_lines.txt", "tflite_benchmark_model_mcu_v2x.txt",
                                  "tflite_readme_op_profiling_excerpt_with_start_col.txt",
                                  "tflite_benchmark_apk_logcat_lines.txt", "@tflite_tf1x_lite_op_table_spaces.txt",
                                  "@tflite_tf1x_classic_glog.txt"]),
    "litert_stdout": (_record(litert_benchmark.parse_stdout, litert_benchmark.to_record),
                      ["litert_benchmark_stdout.txt"]),
    "litert_json": (_record(litert_benchmark.parse_result_json, litert_benchmark.to_record),
                    ["litert_benchmark_result.json"]),
    "litert_log": (litert_benchmark.parse_log, ["litert_benchmark_stderr.txt"]),
    "onnxruntime_perf_test": (_record(ort_perf_test.parse_perf_test, ort_perf_test.to_record),
                              ["ort_perf_test_1.23_arm_sme2.txt", "ort_perf_test_older_acl.txt",
                               "ort_perf_test_ancient_readme.txt", "@ort_perf_test_vendor_ep.txt"]),
    "ort_profile": (_record(ort_profile.parse_ort_profile, ort_profile.to_record),
                    ["ort_profile_cpu_1.31.1.json", "ort_profile_node_events_with_fences_excerpt.txt",
                     "ort_profile_session_events_mql5_excerpt.json.txt"]),
    "trtexec": (_trtexec_summary, ["trtexec_8.6.1_perf_summary_p90_95_99.txt",
                                   "trtexec_8.2_perf_summary_end_to_end.txt", "trtexec_trace_details_10x.txt",
                                   "trtexec_trace_details_7x_8.3_end_to_end.txt",
                                   "trtexec_dumpProfile_table.txt", "@trtexec_7.0_host_latency.txt",
                                   "@trtexec_5.1_average_over.txt"]),
    "trtexec_export": (trtexec.parse_export_profile, ["trtexec_exportProfile_with_median.json",
                                                      "trtexec_exportProfile_without_median_older.json"]),
    "tegrastats": (lambda t: tegrastats.parse_tegrastats(t).summary(),
                   ["tegrastats_samples_by_board.txt", "tegrastats_orin_nano_jp6.txt", "@tegrastats_jp5_jp6_orin.txt"]),
    "meminfo": (android_dumpsys.parse_meminfo, ["android_dumpsys_meminfo_app.txt", "@dumpsys_meminfo_android9.txt"]),
    "thermalservice": (android_dumpsys.parse_thermalservice,
                       ["android_dumpsys_thermalservice_excerpt.txt", "android_dumpsys_thermalservice_test_sample.txt",
                        "@dumpsys_thermalservice_spaces_nan.txt"]),
    "getprop": (android_dumpsys.parse_getprop, ["android_dumpsys_thermalservice_excerpt.txt"]),
    "mlperf_summary": (_record(mlperf.parse_summary, mlperf.to_record),
                       ["mlperf_loadgen_summary_singlestream_invalid.txt", "@mlperf_summary_offline_indented.txt"]),
    "mlperf_detail": (_record(mlperf.parse_detail, mlperf.to_record), ["mlperf_mobile_mlperf_log_detail_lines.txt"]),
    "qaihm_summary": (qaihm.parse_job_summaries, ["qaihm_profile_job_summary_text.txt",
                                                  "qaihm_profile_job_summary_more.txt", "@qaihm_export_table.txt"]),
    "qaihm_dict": (qaihm.parse_profile_dict, ["qai_hub_0.56_download_profile_dict.py.txt"]),
    "app_report": (_app, ["@app_report_ios.json"]),
}


def _read(name: str) -> str:
    return (VARIANTS / name[1:]).read_text(encoding="utf-8") if name.startswith("@") else fx(name)


# Things hostile files carry: number spellings, separators, prefixes, encodings gone wrong, regex bait.
NASTY = [
    "nan", "-nan", "NaN", "inf", "-inf", "Infinity", "1.#INF", "-1.#IND", "1e309", "-1e309", "1e-400",
    "9" * 80, "9" * 5000, "1" * 30, "0x1F", "1,234", "1.234,5", "1\u00a0234,5", "1'234.5", "12,5", "1.2.3", "²",
    "١٢٣", "𝟏𝟐", "-", "+", ".", ",", "e5", "1e", "%", "ms", " s", "(all same)", "\t", "  ", "\r", "\r\n",
    "\x00", "\x1b[31m", "\x1b[0m", "\ufeff", "\u200b", "\u2028", "\x85", "\ufffd", "[", "]", "{", "}", "[[", "{{",
    '"', "\\", ":", "=", "@", "/", "|", "INFO: ", "[I] ", "[W] ", "[V] ", "... tflite  : ", ":::MLLOG ",
    "&&&& PASSED TensorRT.trtexec [TensorRT v100300] # x", "=== Performance summary ===",
    "=== Profile (5 iterations ) ===", "Host Latency", "Host latency", "count=", "min = ", "percentile(99%) = ", "RAM ",
    "CPU [", "** MEMINFO in pid 1 [a] **",
    "App Summary", "Current temperatures from HAL:", "Temperature{mValue=", "Profile Job summary of x",
    "Performance results on-device for x.", "MLPerf Results Summary", "Additional Stats", "TOTAL: 1",
    "[" * 3000, "{" * 3000, "(" * 500, "a " * 3000, " " * 5000, ":" * 3000, "= " * 3000, "1 " * 3000, "1," * 3000,
    "1." * 3000, "\t1" * 3000, "-" * 3000, "@" * 3000, "x@1C " * 500, "VDD_IN 1/" * 500,
]


@st.composite
def hostile_texts(draw, lines: list[str]) -> str:
    """A text made of real lines of one tool, then damaged."""
    count = draw(st.integers(0, min(60, 3 * len(lines))))
    picked = [draw(st.sampled_from(lines)) for _ in range(count)] if lines else []
    if draw(st.booleans()):  # keep the real order for a stretch: structure (tables, blocks) survives
        start = draw(st.integers(0, max(0, len(lines) - 1)))
        picked = lines[start:start + draw(st.integers(1, 40))] + picked[: count // 3]
    out: list[str] = []
    for line in picked:
        action = draw(st.integers(0, 9))
        if action == 0 and line:  # replace a slice with something nasty
            i = draw(st.integers(0, len(line)))
            j = draw(st.integers(i, min(len(line), i + 12)))
            line = line[:i] + draw(st.sampled_from(NASTY)) + line[j:]
        elif action == 1:  # every digit run becomes a hostile number
            nasty = draw(st.sampled_from(NASTY[:25]))
            line = re.sub(r"\d+", lambda _m: nasty, line)
        elif action == 2 and line:  # random characters inserted
            i = draw(st.integers(0, len(line)))
            line = line[:i] + draw(st.text(max_size=8)) + line[i:]
        elif action == 3:
            line = line.replace(" ", draw(st.sampled_from(["\u00a0", "\t", "  ", "", "\u2009"])))
        elif action == 4:
            line = draw(st.sampled_from(["\x1b[1;32m", "\ufeff", "WARNING: ", "[W] ", ""])) + line
        out.append(line)
    text = draw(st.sampled_from(["\n", "\r\n", "\r"])).join(out)
    if draw(st.booleans()):
        text += "\n"
    tail = draw(st.integers(0, 4))
    if tail == 1:  # cut anywhere
        text = text[: draw(st.integers(0, len(text)))]
    elif tail == 2:  # binary garbage appended
        text += draw(st.binary(max_size=64)).decode("latin-1")
    elif tail == 3:
        text += draw(st.sampled_from(NASTY))
    return text


def _check(call, text: str) -> None:
    start = time.perf_counter()
    try:
        call(text)
    except ParseError:
        pass
    elapsed = time.perf_counter() - start
    assert elapsed < SECONDS, f"parse took {elapsed:.2f}s on a {len(text)}-character input"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_no_parser_raises_anything_but_its_typed_error(name):
    call, sources = TARGETS[name]
    lines = [line for source in sources for line in _read(source).splitlines()]
    texts = [_read(source) for source in sources]

    seen: list[int] = []

    @FUZZ
    @given(hostile_texts(lines), st.sampled_from(texts), st.integers(0, 2))
    def fuzz(text: str, whole: str, mode: int) -> None:
        seen.append(len(text))
        if mode == 1:  # a real file, cut and salted
            text = whole[: len(text) % (len(whole) + 1)] + text[:200]
        elif mode == 2:  # a real file with damage in the middle
            i = len(text) % (len(whole) + 1)
            text = whole[:i] + text[:100] + whole[i:]
        _check(call, text)

    fuzz()
    assert len(seen) >= EXAMPLES, f"only {len(seen)} examples ran"  # the fuzz really ran, at the count set
    print(f"{name}: {len(seen)} examples, up to {max(seen)} characters")


@pytest.mark.parametrize("name", sorted(TARGETS))
@pytest.mark.parametrize("bait", ["[" * 20000, "{" * 20000, "(" * 20000, " " * 200000, "1," * 100000, "a=" * 100000,
                                  ("x" * 19999 + "\n") * 20, "RAM 1/2MB " * 2000 + "x", "\t" * 50000 + "1",
                                  ": [" * 20000 + "]", "Temperature{mValue=1, " * 5000, "- a" * 30000 + ": 1 MB"])
def test_pathological_inputs_are_fast(name, bait):
    """Regex bait and deep nesting, many times larger than any tool's output: still under a second, typed."""
    call, _sources = TARGETS[name]
    _check(call, bait)
    _check(call, bait + "\n")


# JSON leaves a hostile or corrupted file may hold instead of the real ones: wrong types, NaN/Infinity, integers
# beyond float range, nesting.
JSON_LEAVES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats() | st.text(max_size=8)
    | st.sampled_from([10**400, -(10**400), "1e999", "nan", "", "12", [], {}]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


@st.composite
def mutated_json(draw, doc: object) -> object:
    """The real document with keys dropped and values swapped for hostile ones, structure otherwise kept."""
    def walk(node: object) -> object:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                roll = draw(st.integers(0, 11))
                if roll == 0:
                    continue
                out[key] = draw(JSON_LEAVES) if roll == 1 else walk(value)
            return out
        if isinstance(node, list):
            return [walk(v) for v in node if draw(st.integers(0, 9))]
        return draw(JSON_LEAVES) if draw(st.integers(0, 3)) == 0 else node
    return walk(doc)


def _json_docs(name: str) -> tuple[list[object], callable]:
    """The real documents of a JSON-reading target and how to print one back as that file."""
    import ast
    import json

    text = _read(TARGETS[name][1][0])
    if name == "qaihm_dict":
        return [ast.literal_eval(text)], repr
    if name == "mlperf_detail":
        lines = [json.loads(line[len(":::MLLOG"):]) for line in text.splitlines() if line]
        return [lines], lambda docs: "\n".join(":::MLLOG " + json.dumps(d) for d in docs) + "\n"
    if name in ("ort_profile", "trtexec_export") and not text.rstrip().endswith("]"):
        text = text.rstrip().rstrip(",") + "\n]"
    return [json.loads(text)], lambda doc: json.dumps(doc, indent=1)


@pytest.mark.parametrize("name", ["app_report", "litert_json", "ort_profile", "trtexec_export", "qaihm_dict",
                                  "mlperf_detail"])
def test_json_readers_survive_hostile_values(name):
    call = TARGETS[name][0]
    docs, dump = _json_docs(name)
    seen: list[int] = []

    @FUZZ
    @given(st.sampled_from(docs).flatmap(mutated_json))
    def fuzz(doc: object) -> None:
        seen.append(1)
        _check(call, dump(doc))

    fuzz()
    assert len(seen) >= EXAMPLES
