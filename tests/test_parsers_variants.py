"""Every variant of each tool's output a user will meet, read to the same figures; and the cases where a figure a
person needs is truly absent, failing with a ParseError that names a line.

Two kinds of variants: the tools' own wordings across versions and vendors (real outputs in the shared fixtures,
and tests/fixtures/parsers/, see its README for where each wording comes from), and what saving does to an output
(CRLF, UTF-8 BOM, UTF-16 from PowerShell, ANSI colours, interleaved warnings, locale numbers, trailing garbage).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edgediff.errors import ParseError
from edgediff.profile.importers import import_report
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
from tests.test_parsers import FIXTURES, fx, pytestmark  # noqa: F401  (skip when fixtures are missing)

VARIANTS = Path(__file__).resolve().parent / "fixtures" / "parsers"
AT_LINE = re.compile(r"at line (\d+): ")


def vx(name: str) -> str:
    return (VARIANTS / name).read_text(encoding="utf-8")


def absent(call, *args, line: int | None = None, match: str = ""):
    """`call` fails with a ParseError naming a line (that line, if given) and saying `match`."""
    with pytest.raises(ParseError) as info:
        call(*args)
    message = str(info.value)
    found = AT_LINE.search(message)
    assert found, f"no line number in {message!r}"
    if line is not None:
        assert int(found[1]) == line, message
    assert match in message, message
    return message


# --------------------------------------------------------------------------------------------- what saving does

def crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


def bom(text: str) -> str:
    return "\ufeff" + text


def ansi(text: str) -> str:
    return "\n".join(f"\x1b[1;32m{line}\x1b[0m" if line else line for line in text.split("\n"))


def garbage(text: str) -> str:
    return text + "\x00\x00\x7fELF\x02\x01\x01\ufffd\ufffd binary tail 12"


def decimal_comma(text: str) -> str:
    """A figure re-saved in a decimal-comma locale: 8779.68 -> 8779,68 (only number.number, never 8.6.1)."""
    return re.sub(r"(?<![\d.])(\d+)\.(\d+)(?![\d.])", r"\1,\2", text)


def interleave(text: str, noise: str, every: int = 3) -> str:
    out = []
    for i, line in enumerate(text.split("\n")):
        out.append(line)
        if i % every == every - 1 and line:
            out.append(noise)
    return "\n".join(out)


SAVED = {"crlf": crlf, "bom": bom, "ansi": ansi, "garbage": garbage, "crlf+bom+ansi": lambda t: ansi(bom(crlf(t)))}


# --------------------------------------------------------------------------------------------- benchmark_model

def tflite_figures(text: str) -> list[tuple]:
    return [(r.init_us, r.warmup_avg_us, r.inference_avg_us, r.inference.count if r.inference else None,
             r.inference.min if r.inference else None) for r in tflite_benchmark.parse_benchmark_model(text)]


TFLITE_WARNING = ("WARNING: Attempting to use a delegate that only supports static-sized tensors with a graph that "
                  "has dynamic-sized tensors (tensor#94 is a dynamic-sized tensor).")


@pytest.mark.parametrize("variant", [*SAVED, "decimal_comma", "interleaved", "logcat", "thousands"])
def test_tflite_saved_variants_read_the_same_figures(variant):
    text = fx("tflite_benchmark_model_gpu_opprofiling_v2.4era.txt")
    want = tflite_figures(text)
    if variant in SAVED:
        text = SAVED[variant](text)
    elif variant == "decimal_comma":
        text = decimal_comma(text)
    elif variant == "interleaved":
        text = interleave(text, TFLITE_WARNING)
    elif variant == "logcat":
        text = "\n".join(f"05-01 10:00:00.123  4321  4350 I tflite  : {line}" for line in text.split("\n"))
    elif variant == "thousands":
        text = text.replace("Init: 1451507,", "Init: 1,451,507,").replace("count=110 ", "count=1\u00a010 ")
        want = [(1451507.0, 8779.68, 8680.33, 110, 7863.0)]
        text = text.replace("count=1\u00a010 ", "count=110 ")
    assert tflite_figures(text) == want == [(1451507.0, 8779.68, 8680.33, 110, 7863.0)]
    (run,) = tflite_benchmark.parse_benchmark_model(text)
    assert run.profiles[1].by_node_type[0].avg_ms == 8.671 and run.peak_memory_overall_mb == 63.4883


def test_tflite_tf1x_lite_wording_and_space_aligned_op_table():
    (run,) = tflite_benchmark.parse_benchmark_model(vx("tflite_tf1x_lite_op_table_spaces.txt"))
    assert run.phases == [{"min_runs": 1, "min_secs": 0.5}, {"min_runs": 50, "min_secs": 1.0}]
    assert (run.session_init_ms, run.init_us, run.warmup_avg_us, run.inference_avg_us) == (1.892, 1892, 86184.3, 115062)
    assert run.inference == tflite_benchmark.RunStat(50, 118810, 114219, 88216, 129193, 115062, 7678)
    (prof,) = run.profiles
    assert prof.run_order[1] == tflite_benchmark.OpRow("DEPTHWISE_CONV_2D", 3.518, 3.726, 3.243, 9.539, 0.0, 1,
                                                       "[MobilenetV2/expanded_conv/depthwise/Relu6]", 7.241)
    assert [(r.node_type, r.count, r.avg_ms) for r in prof.by_node_type] == [("CONV_2D", 36, 77.521),
                                                                            ("DEPTHWISE_CONV_2D", 17, 36.379)]
    assert prof.nodes_observed == 65 and prof.timings_us.avg == 114903
    rec = tflite_benchmark.to_record(run, component="m")
    assert (rec.mean_ms, rec.min_ms, rec.init_ms, rec.runs, rec.median_ms) == (115.062, 88.216, 1.892, 50, None)
    assert rec.ops[0].name == "CONV_2D" and rec.settings["num_threads"] == 1


def test_tflite_tf1x_classic_glog_three_phases():
    (run,) = tflite_benchmark.parse_benchmark_model(vx("tflite_tf1x_classic_glog.txt"))
    assert [p["max_runs"] for p in run.phases] == [2, 1000, 1000]
    assert run.warmup.count == 2 and run.inference.count == 65  # the third (with stats) run is not the timing
    assert (run.init_us, run.warmup_avg_us, run.inference_avg_us) == (None, 169371, 154047)
    assert run.profiles[0].memory_bytes == tflite_benchmark.RunStat(count=61, curr=1643420, all_same=True)
    rec = tflite_benchmark.to_record(run, component="m")
    assert (rec.mean_ms, rec.min_ms, rec.max_ms) == (154.047, 84.108, 186.161)


@pytest.mark.parametrize("summary, phase, want", [
    ("Average inference timings in us: Warmup: 146161, Init: 4452, no stats: 137722",
     "Running benchmark for 50 iterations", (4452, 146161, 137722, {"min_runs": 50})),
    ("Average inference timings in us: Warmup: 83235, Init: 38467, Inference: 79760.9",
     "Running benchmark for at least 50 iterations and at least 1 seconds",
     (38467, 83235, 79760.9, {"min_runs": 50, "min_secs": 1.0})),
    ("Inference timings in us: Init: 855, First inference: 49060, Warmup (avg): 34825.1, Inference (avg): 33209.4",
     "Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.",
     (855, 34825.1, 33209.4, {"min_runs": 50, "min_secs": 1.0, "max_secs": 150.0})),
    ("Average inference timings in us: Warmup: 169371, no stats: 154047, with stats: 165939",
     ("Running benchmark for max 1000 iterations, max 10 seconds without detailed stat logging, with -1s sleep "
      "between inferences"), (None, 169371, 154047, {"max_runs": 1000, "max_secs": 10.0})),
])
def test_tflite_summary_and_phase_wordings_of_each_version(summary, phase, want):
    text = (f"Loaded model m.tflite\nresolved reporter\nInitialized session in 4.452ms\n{phase}\n"
            f"count=50 first=1 curr=1 min=1 max=2 avg=1.5 std=0\n\n{summary}\n")
    (run,) = tflite_benchmark.parse_benchmark_model(text)
    assert (run.init_us, run.warmup_avg_us, run.inference_avg_us, run.phases[0]) == want
    assert run.session_init_ms == 4.452


def test_tflite_absent_figures_name_a_line():
    (memory_only,) = tflite_benchmark.parse_benchmark_model(fx("tflite_benchmark_model_memory_lines.txt"))
    absent(lambda: tflite_benchmark.to_record(memory_only, component="c"), line=6,
           match="no 'Inference timings in us'")
    cut = fx("tflite_benchmark_model_gpu_opprofiling_v2.4era.txt").split("Inference timings in us")[0]
    (run,) = tflite_benchmark.parse_benchmark_model(cut)
    absent(lambda: tflite_benchmark.to_record(run, component="c"), line=45, match="summary line")
    absent(tflite_benchmark.parse_benchmark_model, "count=5 first=1 curr=1 min=1 max=2 avg=nan std=0\n", line=1,
           match="not a finite number")
    absent(tflite_benchmark.parse_benchmark_model, "Initialized session in 12.5ms.\nInference timings in us: Init: "
           "1, First inference: 2, Warmup (avg): 3, Inference (avg): inf\n", line=2, match="not a finite number")


# --------------------------------------------------------------------------------------------- litert-benchmark

@pytest.mark.parametrize("variant", [*SAVED, "decimal_comma"])
def test_litert_stdout_and_json_variants(variant):
    change = SAVED.get(variant, decimal_comma)
    out = litert_benchmark.parse_stdout(change(fx("litert_benchmark_stdout.txt")))
    assert (out.latency_ms["median_ms"], out.latency_ms["avg_ms"], out.latency_ms["p95_ms"], out.num_runs) == (
        0.04, 0.05, 0.06, 50)
    assert out.throughput_mb_s == 993.97
    if variant != "decimal_comma":  # JSON numbers have one spelling
        js = litert_benchmark.parse_result_json(change(fx("litert_benchmark_result.json")))
        assert js.latency_ms == out.latency_ms and js.num_warmup_runs == 5
        log = litert_benchmark.parse_log(change(fx("litert_benchmark_stderr.txt")))
        assert (log["num_runs"], log["model_load_ms"]) == (50, 4.6)


def test_litert_absent_figures_name_a_line():
    absent(litert_benchmark.parse_stdout, fx("litert_benchmark_stdout.txt").split("Model initialization")[0],
           match="no 'BENCHMARK RESULTS' latency lines")
    absent(litert_benchmark.parse_result_json, '{"model": "m.tflite", "latency": [1, 2]}\n', line=1,
           match="no 'latency' object")
    js = litert_benchmark.parse_result_json('{\n"latency": {"init_ms": 4.6, "num_runs": 50}\n}\n')
    absent(lambda: litert_benchmark.to_record(js, component="c"), line=3, match="no median or average")
    absent(litert_benchmark.parse_result_json, fx("litert_benchmark_result.json")[:200], match="not valid JSON")


# --------------------------------------------------------------------------------------------- onnxruntime_perf_test

ORT_WARNING = ("2026-05-01 10:00:00.123456789 [W:onnxruntime:, session_state.cc:1166 VerifyEachNodeIsAssignedToAnEp] "
               "Some nodes were not assigned to the preferred execution providers which may or may not have an "
               "negative impact on performance.")


def ort_figures(text: str) -> tuple:
    r = ort_perf_test.parse_perf_test(text)
    return (r.values["average_ms"], r.latency_ms["p50"], r.latency_ms["p90"], r.values["requests"],
            r.values["peak_working_set_bytes"], r.values["session_creation_ms"])


@pytest.mark.parametrize("variant", [*SAVED, "decimal_comma", "interleaved", "thousands", "no_space"])
def test_ort_perf_test_saved_variants(variant):
    text = fx("ort_perf_test_1.23_arm_sme2.txt")
    if variant in SAVED:
        text = SAVED[variant](text)
    elif variant == "decimal_comma":
        text = decimal_comma(text)
    elif variant == "interleaved":
        text = interleave(text, ORT_WARNING, every=2)
    elif variant == "thousands":
        text = text.replace("271122432 bytes", "271,122,432 bytes")
        text = text.replace("size:271122432", "size:271\u00a0122\u00a0432")
    elif variant == "no_space":  # the 2019 LoadGen-based build printed `cost:0.2 s`
        text = text.replace(": ", ":")
    assert ort_figures(text) == (98.961997, 99.5086, 101.519, 5, 271122432, 217.932)


def test_ort_perf_test_vendor_ep_and_every_format():
    r = ort_perf_test.parse_perf_test(vx("ort_perf_test_vendor_ep.txt"))
    assert r.execution_providers == ["SpaceMITExecutionProvider"] and r.intra_op_threads == 1
    assert (r.values["average_ms"], r.latency_ms["p50"], r.values["runs"]) == (7.270205, 7.27787, 10)
    rec = ort_perf_test.to_record(r, component="c")
    assert rec.settings["execution_providers"] == ["SpaceMITExecutionProvider"] and rec.median_ms == 7.27787
    assert ort_figures(fx("ort_perf_test_older_acl.txt"))[:2] == (17.735, 16.7086)
    old = ort_perf_test.parse_perf_test(fx("ort_perf_test_ancient_readme.txt"))
    assert (old.values["average_ms"], old.latency_ms["p999"]) == (58.8053, 62.3472)


def test_ort_perf_test_utf16_powershell_file(tmp_path):
    path = tmp_path / "perf.txt"
    path.write_bytes(b"\xff\xfe" + crlf(fx("ort_perf_test_1.23_arm_sme2.txt")).encode("utf-16-le"))
    (rec,) = import_report(path, "onnxruntime_perf_test")
    assert (rec.median_ms, rec.mean_ms, rec.runs) == (99.5086, 98.961997, 5)


def test_ort_perf_test_absent_figures_name_a_line():
    text = fx("ort_perf_test_1.23_arm_sme2.txt")
    absent(ort_perf_test.parse_perf_test, text.split("Average inference")[0], line=6,
           match="no 'Average inference time cost' or 'P50 Latency' line")
    absent(ort_perf_test.parse_perf_test, ORT_WARNING + "\n", line=1, match="no 'Average")
    absent(ort_perf_test.parse_perf_test, text.replace("P50 Latency: 0.0995086 s", "P50 Latency: -nan s"),
           line=17, match="not a finite number")


# --------------------------------------------------------------------------------------------- ORT profile JSON

@pytest.mark.parametrize("variant", [*SAVED, "unindented", "one_line"])
def test_ort_profile_variants(variant):
    text = fx("ort_profile_cpu_1.31.1.json")
    if variant in SAVED:
        text = SAVED[variant](text)
    elif variant == "one_line":
        text = json.dumps(json.loads(text))
    elif variant == "unindented":
        text = json.dumps(json.loads(text), indent=1)
    p = ort_profile.parse_ort_profile(text)
    assert p.run_us == [534, 39, 54] and p.nodes["r_nchwc"].durations_us == [377, 16, 12]
    rec = ort_profile.to_record(p, component="c")
    assert (rec.median_ms, rec.runs, rec.first_inference_ms) == (0.054, 3, 0.534)


def test_ort_profile_absent_figures_name_a_line():
    p = ort_profile.parse_ort_profile(fx("ort_profile_session_events_mql5_excerpt.json.txt"))
    absent(lambda: ort_profile.to_record(p, component="c"), line=2, match="no model_run events")
    absent(ort_profile.parse_ort_profile, fx("ort_profile_cpu_1.31.1.json")[:900], match="not valid or not closed")
    absent(ort_profile.parse_ort_profile, "\n\n", match="no JSON objects")


# --------------------------------------------------------------------------------------------- trtexec

TRT_WARNING = "[05/09/2022-06:10:36] [W] * GPU compute time is unstable, with coefficient of variance = 3.5%."
TRT_VERBOSE = ("[05/09/2022-06:10:36] [V] Throughput: the observed throughput computed by dividing the number of "
               "queries by the Total Host Walltime.\n[05/09/2022-06:10:36] [V] Total Host Walltime: the host walltime "
               "from when the first query (after warmups) is enqueued to when the last query is completed.")


def trt_figures(text: str) -> tuple:
    log = trtexec.parse_trtexec_log(text)
    lat = log.host_latency
    return (lat.median, lat.mean, lat.percentiles, log.throughput_qps, log.total_host_walltime_s)


@pytest.mark.parametrize("variant", [*SAVED, "decimal_comma", "warnings", "verbose_explanations"])
def test_trtexec_saved_variants(variant):
    text = fx("trtexec_8.6.1_perf_summary_p90_95_99.txt")
    if variant in SAVED:
        text = SAVED[variant](text)
    elif variant == "decimal_comma":
        text = decimal_comma(text)
    elif variant == "warnings":
        text = interleave(text, TRT_WARNING, every=2)
    elif variant == "verbose_explanations":
        text = text + TRT_VERBOSE + "\n"
    assert trt_figures(text) == (29.2732, 27.5067, {90: 29.739, 95: 30.0433, 99: 30.3047}, 65.7372, 3.05763)


def test_trtexec_version_wordings():
    t7 = trtexec.parse_trtexec_log(vx("trtexec_7.0_host_latency.txt"))  # TRT 7.0: "Host latency", lower-case l
    assert (t7.host_latency.median, t7.host_latency.end_to_end.median, t7.throughput_qps) == (12.1667, 12.1799, 81.5748)
    assert t7.metrics["GPU Compute"].percentiles == {99: 13.204} and t7.status == "PASSED"
    assert t7.options["Model Options"]["Format"] == "ONNX"
    rec = trtexec.to_record(t7, component="c")
    assert (rec.median_ms, rec.warmup, rec.runs, rec.extra["end_to_end_median_ms"]) == (12.1667, 16, 246, 12.1799)
    t82 = trtexec.parse_trtexec_log(fx("trtexec_8.2_perf_summary_end_to_end.txt"))
    assert t82.host_latency.median == 0.899048 and t82.metrics["End-to-End Host Latency"].percentiles == {99: 1.80432}
    profile = trtexec.parse_trtexec_log(interleave(fx("trtexec_dumpProfile_table.txt"), "[W] [TRT] late warning"))
    assert len(profile.layers) == 3 and profile.layers_total.avg_ms == 5.8873


def test_trtexec_absent_figures_name_a_line():
    trt5 = trtexec.parse_trtexec_log(vx("trtexec_5.1_average_over.txt"))
    message = absent(lambda: trtexec.to_record(trt5, component="c"), line=7, match="only trace averages")
    assert "an average is no median" in message
    assert trtexec.parse_trtexec_log(vx("trtexec_5.1_average_over.txt")).trace[0] == trtexec.TraceAverage(
        10, 4.21862, 4.30577)
    absent(lambda: trtexec.to_record(trtexec.parse_trtexec_log(fx("trtexec_trace_details_10x.txt")), component="c"),
           line=8, match="only trace averages")
    failed = fx("trtexec_8.2_perf_summary_end_to_end.txt") + "&&&& FAILED TensorRT.trtexec [TensorRT v8201] # x\n"
    absent(lambda: trtexec.to_record(trtexec.parse_trtexec_log(failed), component="c"), line=11, match="FAILED")
    table = fx("trtexec_dumpProfile_table.txt")
    absent(trtexec.parse_trtexec_log, table[: table.index("[01/20/2024-20:25:39] [I]     1707.30")], line=5,
           match="no 'Total' row")
    absent(trtexec.parse_trtexec_log, fx("trtexec_8.2_perf_summary_end_to_end.txt").replace(
        "median = 0.899048 ms", "median = nan ms", 1), line=3, match="not a finite number")


# --------------------------------------------------------------------------------------------- tegrastats

@pytest.mark.parametrize("variant", [*SAVED, "prompt_and_ctrl_c"])
def test_tegrastats_saved_variants(variant):
    text = fx("tegrastats_orin_nano_jp6.txt")
    if variant in SAVED:
        text = SAVED[variant](text) if variant != "garbage" else text + "^C\nnvidia@orin:~$ \n"
    else:
        text = "nvidia@orin:~$ sudo tegrastats --interval 1000\n" + text + "^C\n"
    log = tegrastats.parse_tegrastats(text)
    assert len(log.samples) == 2 and log.samples[0].rails_mw["VDD_IN"] == (4673, 4673)
    assert log.summary()["temp_c_max"]["gpu"] == 55.656


def test_tegrastats_every_board_and_jetpack():
    old = tegrastats.parse_tegrastats(fx("tegrastats_samples_by_board.txt")).samples
    assert [s.ram_total_mb for s in old] == [3964, 3983, 7829, 15692]
    agx5, nx6 = tegrastats.parse_tegrastats(vx("tegrastats_jp5_jp6_orin.txt")).samples
    assert agx5.loads["GR3D_FREQ"] == (0, [0, 0]) and agx5.clocks_mhz == {"VIC_FREQ": 729, "APE": 174}
    assert "CV0" not in agx5.temps_c and agx5.temps_c["tj"] == 44.343  # -256C: the sensor is off
    assert agx5.rails_mw["VIN_SYS_5V0"] == (4025, 4025) and len(agx5.cpus) == 12
    assert nx6.loads["NVENC"] == (1, [115]) and nx6.loads["NVDEC"] == (40, [115]) and nx6.loads["VIC"] == (31, [115])
    assert nx6.loads["GR3D_FREQ"] == (84, [713]) and nx6.rails_mw["VDD_IN"] == (17946, 15710)
    assert nx6.timestamp == "05-15-2025 18:30:28" and nx6.swap_cached_mb == 202


def test_tegrastats_absent_samples_name_a_line():
    absent(tegrastats.parse_tegrastats, "nvidia@orin:~$ tegrastats\nbash: tegrastats: command not found\n", line=2,
           match="no samples")
    absent(tegrastats.parse_tegrastats, fx("tegrastats_orin_nano_jp6.txt").replace("VDD_SOC 1339mW", "VDD_SOC 13#9mW"),
           line=1, match="unknown or cut field")


# --------------------------------------------------------------------------------------------- dumpsys

@pytest.mark.parametrize("variant", [*SAVED, "spacing_lost"])
def test_meminfo_variants(variant):
    text = fx("android_dumpsys_meminfo_app.txt")
    if variant in SAVED:
        text = SAVED[variant](text)
    else:  # copied from a web page: runs of spaces collapse, the table's alignment is gone
        text = "\n".join(" ".join(line.split()) for line in text.split("\n"))
    m = android_dumpsys.parse_meminfo(text)
    assert m.totals_kb == {"TOTAL PSS": 105529, "TOTAL RSS": 187052, "TOTAL SWAP": 0}
    assert m.rows["Native Heap"]["Rss Total"] == 27072 and m.rows["Dalvik Other"]["Rss Total"] == 2908
    assert m.app_summary["Java Heap"] == {"Pss": 5604, "Rss": 26492}


def test_meminfo_android9_layout():
    m = android_dumpsys.parse_meminfo(vx("dumpsys_meminfo_android9.txt"))
    assert m.columns == ["Pss Total", "Private Dirty", "Private Clean", "SwapPss Dirty", "Heap Size", "Heap Alloc",
                         "Heap Free"]
    assert m.rows["Native Heap"] == dict(zip(m.columns, [63416, 63204, 0, 0, 113664, 77388, 36275]))
    assert m.totals_kb == {"TOTAL PSS": 135623, "TOTAL SWAP PSS": 0} and m.total_pss_mb == pytest.approx(132.444, 1e-4)
    assert m.app_summary["Graphics"] == {"Pss": 18636}
    old_header = ("** MEMINFO in pid 7 [x] **\n                         Shared  Private     Heap     Heap     Heap\n"
                  "                   Pss    Dirty    Dirty     Size    Alloc     Free\n"
                  "                ------   ------   ------   ------   ------   ------\n"
                  "  Native Heap        0        0        0    13792    13520      271\n\n")
    m4 = android_dumpsys.parse_meminfo(old_header)  # Android 4: `Pss` alone on the lower header line
    assert m4.columns == ["Pss", "Shared Dirty", "Private Dirty", "Heap Size", "Heap Alloc", "Heap Free"]
    assert m4.rows["Native Heap"]["Heap Alloc"] == 13520


def test_thermalservice_variants():
    shield = android_dumpsys.parse_thermalservice(vx("dumpsys_thermalservice_spaces_nan.txt"))
    assert [(t.name, t.value_c) for t in shield.temperatures] == [("CPU0", 66.5), ("CPU1", 65.0), ("GPU", 58.0)]
    assert shield.max_c() == 66.5 and shield.cooling_devices == {"thermal-cpufreq-0": 2}  # cached 37.0 is stale
    for change in SAVED.values():
        t = android_dumpsys.parse_thermalservice(change(fx("android_dumpsys_thermalservice_test_sample.txt")))
        assert [x.value_c for x in t.temperatures] == [62.500004, 62.500004, 61.000004]
    extra = fx("android_dumpsys_thermalservice_excerpt.txt").replace("mStatus=0}", "mStatus=0, mExtra=1}")
    assert android_dumpsys.parse_thermalservice(extra).max_c() == 62.500004


def test_dumpsys_absent_figures_name_a_line():
    absent(android_dumpsys.parse_meminfo, "Applications Memory Usage (in Kilobytes):\nNo process found for: x\n",
           line=2, match="no '** MEMINFO in pid' block")
    absent(android_dumpsys.parse_thermalservice, "IsStatusOverride: false\nHAL Ready: false\n", line=2,
           match="no 'Current temperatures from HAL'")
    absent(android_dumpsys.parse_meminfo, fx("android_dumpsys_meminfo_app.txt").replace(" 24482 ", " 24#82 "),
           line=8, match="memory table row")


# --------------------------------------------------------------------------------------------- MLPerf

@pytest.mark.parametrize("variant", [*SAVED, "thousands", "indented"])
def test_mlperf_summary_variants(variant):
    text = fx("mlperf_loadgen_summary_singlestream_invalid.txt")
    if variant in SAVED:
        text = SAVED[variant](text)
    elif variant == "thousands":
        text = text.replace(": 632335750", ": 632,335,750").replace(": 597931992", ": 597\u00a0931\u00a0992")
    else:
        text = "\n".join(f"                {line} " for line in text.split("\n"))
    rec = mlperf.to_record(mlperf.parse_summary(text), component="c")
    assert (rec.median_ms, rec.min_ms, rec.p90_ms, rec.extra["result"]) == (632.33575, 597.931992, 700.060891,
                                                                            "INVALID")


def test_mlperf_offline_and_prefixed_detail():
    s = mlperf.parse_summary(vx("mlperf_summary_offline_indented.txt"))
    assert s.fields["Scenario"] == "Offline" and s.fields["Samples per second"] == "658.248"
    assert mlperf.to_record(s, component="c").median_ms == 503.456611
    detail = "\n".join(f"05-01 10:00:00.123  4321  4350 I mlperf  : {line}"
                       for line in fx("mlperf_mobile_mlperf_log_detail_lines.txt").split("\n") if line)
    assert mlperf.to_record(mlperf.parse_detail(crlf(detail)), component="c").mean_ms == 31.329862


def test_mlperf_absent_figures_name_a_line():
    text = fx("mlperf_loadgen_summary_singlestream_invalid.txt")
    head = mlperf.parse_summary(text.split("Additional Stats")[0])
    absent(lambda: mlperf.to_record(head, component="c"), line=17, match="no 'Mean latency (ns)'")
    absent(mlperf.parse_summary, "MLPerf Results Summary\nSUT name : x\n", line=2, match="no latency lines")
    detail = "\n".join(line for line in fx("mlperf_mobile_mlperf_log_detail_lines.txt").split("\n")
                       if "result_mean" not in line and "percentile" not in line)
    absent(lambda: mlperf.to_record(mlperf.parse_detail(detail), component="c"), line=6, match="no result_mean")
    absent(mlperf.parse_detail, ':::MLLOG {"value": 5}\n', line=1, match="without a key")


# --------------------------------------------------------------------------------------------- Qualcomm AI Hub

def test_qaihm_both_export_formats_and_saved_variants():
    new, fast = qaihm.parse_job_summaries(vx("qaihm_export_table.txt"))
    assert (new.model, new.device, new.runtime, new.estimated_inference_ms, new.peak_memory_range_mb) == (
        "Ffnet_40S", "Samsung Galaxy S23 (13)", "TFLITE", 23.3, (3, 5))
    assert new.compute_units == {"NPU": 92} and new.total_ops == 92
    assert (fast.estimated_inference_ms, fast.estimated_inference_below_ms) == (None, 0.1)  # `<0.1` is a bound
    assert fast.compute_units == {"NPU": 69, "GPU": 0, "CPU": 2} and fast.total_ops == 71
    for change in [*SAVED.values(), decimal_comma]:
        a, b = qaihm.parse_job_summaries(change(fx("qaihm_profile_job_summary_text.txt")))
        assert (a.estimated_inference_ms, a.peak_memory_range_mb, b.total_ops) == (38.87, (1.36, 8.07), 313)
    p = qaihm.parse_profile_dict(bom(crlf(fx("qai_hub_0.56_download_profile_dict.py.txt"))) + "\n>>> ")
    assert p["execution_summary"]["estimated_inference_time"] == 3652


def test_qaihm_absent_figures_name_a_line():
    absent(qaihm.parse_job_summaries, "Uploading model...\nJob failed\n", line=2, match="no 'Profile Job summary")
    absent(qaihm.parse_profile_dict, "{'execution_detail': []}\n", line=1, match="no execution_summary")
    absent(qaihm.parse_profile_dict, fx("qai_hub_0.56_download_profile_dict.py.txt")[:300],
           match="not a complete Python literal")


# --------------------------------------------------------------------------------------------- our apps' reports

@pytest.mark.parametrize("variant", [*SAVED, "utf16"])
def test_app_report_saved_variants(variant, tmp_path):
    text = vx("app_report_ios.json")
    path = tmp_path / "report.json"
    if variant == "utf16":
        path.write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))
    else:
        path.write_text(SAVED[variant](text), encoding="utf-8", newline="")
    unet, vae = import_report(path, "app")
    assert (unet.median_ms, unet.max_ms, unet.runs, unet.init_ms) == (100.4, 120.0, 5, 1843.2)
    assert (vae.median_ms, vae.p90_ms, vae.runs) == (55.5, 60.1, 20)


def test_app_report_absent_figures_name_a_line():
    data = json.loads(vx("app_report_ios.json"))
    del data["results"][1]["median_ms"]
    text = json.dumps(data, indent=2)
    line = text.split("\n").index(next(x for x in text.split("\n") if '"vae_decoder"' in x)) + 1
    absent(app_report.parse_app_report, text, line=line, match="neither latencies_ms nor median_ms")
    data["results"] = []
    absent(app_report.parse_app_report, json.dumps(data), line=1, match="no results")
    absent(app_report.parse_app_report, vx("app_report_ios.json")[:300], match="not valid JSON")
