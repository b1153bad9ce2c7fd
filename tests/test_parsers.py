"""Device-tool parsers against real outputs in /work/shared/fixtures (see its README for provenance).

Every number a person would read in a fixture is checked; truncated and garbled variants must raise ParseError
or give only numbers that the complete output also gives (never a wrong one)."""

from __future__ import annotations

import dataclasses
import json
import os
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

FIXTURES = Path(os.environ.get("EDGEDIFF_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))
if not FIXTURES.is_dir():
    FIXTURES = Path("/work/shared/fixtures")
pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"fixtures folder not found ({FIXTURES})")


def fx(name: str) -> str:
    return (FIXTURES / name).read_text()


approx = pytest.approx


# --------------------------------------------------------------------------------------------- benchmark_model


def test_tflite_v24_gpu_op_profiling_every_number():
    (run,) = tflite_benchmark.parse_benchmark_model(fx("tflite_benchmark_model_gpu_opprofiling_v2.4era.txt"))
    assert run.warnings == ["Duplicate flags: num_threads"]
    assert run.params["Min num runs"] == "50"
    assert run.params["Min runs duration (seconds)"] == "1"
    assert run.params["Max runs duration (seconds)"] == "150"
    assert run.params["Inter-run delay (seconds)"] == "-1"
    assert run.params["Num threads"] == "1"
    assert run.params["Min warmup runs"] == "1"
    assert run.params["Min warmup runs duration (seconds)"] == "0.5"
    assert run.params["Graph"] == "/data/local/tmp/mnv3_seg_float.tflite"
    assert run.params["Enable op profiling"] == "1"
    assert run.params["Max profiling buffer entries"] == "1024"
    assert run.params["#threads used for CPU inference"] == "1"
    assert run.params["Use gpu"] == "1" and run.params["Use nnapi"] == "0" and run.params["Use xnnpack"] == "0"
    assert run.params["Hexagon lib path"] == "/data/local/tmp"
    assert len(run.params) == 34
    assert run.model_path == "/data/local/tmp/mnv3_seg_float.tflite"
    assert run.model_size_mb == 3.79893
    assert run.session_init_ms == 1451.51
    assert run.fully_delegated is True
    assert run.phases == [{"min_runs": 1, "min_secs": 0.5, "max_secs": 150.0},
                          {"min_runs": 50, "min_secs": 1.0, "max_secs": 150.0}]
    assert run.warmup == tflite_benchmark.RunStat(56, 11147, 8146, 7055, 12036, 8779.68, 1115)
    assert run.inference == tflite_benchmark.RunStat(110, 8325, 10016, 7863, 10688, 8680.33, 591)
    assert (run.init_us, run.first_inference_us, run.warmup_avg_us, run.inference_avg_us) == (
        1451507, 11147, 8779.68, 8680.33)
    assert (run.peak_memory_init_mb, run.peak_memory_overall_mb) == (63.4883, 63.4883)

    init, regular = run.profiles
    assert init.is_init and not regular.is_init
    assert init.run_order[0] == tflite_benchmark.OpRow("ModifyGraphWithDelegate", 1450.744, 1450.744, 99.998,
                                                       99.998, 62364.0, 1, "ModifyGraphWithDelegate/0", 0.0)
    assert init.run_order[1] == tflite_benchmark.OpRow("AllocateTensors", 0.028, 0.016, 0.002, 100.0, 0.0, 2,
                                                       "AllocateTensors/0", 1450.830)
    assert init.top_by_time == init.run_order
    assert init.by_node_type == [
        tflite_benchmark.NodeTypeRow("ModifyGraphWithDelegate", 1, 1450.744, 99.998, 99.998, 62364.0, 1),
        tflite_benchmark.NodeTypeRow("AllocateTensors", 1, 0.032, 0.002, 100.0, 0.0, 2)]
    assert init.nodes_executed == 2 and init.nodes_observed == 2
    assert init.timings_us == tflite_benchmark.RunStat(count=1, curr=1450776)
    assert init.memory_bytes == tflite_benchmark.RunStat(count=0)
    assert regular.run_order == [tflite_benchmark.OpRow("TfLiteGpuDelegateV2", 8.317, 8.671, 100.0, 100.0, 0.0, 1,
                                                        "[Identity]:77", 0.0)]
    assert regular.by_node_type == [tflite_benchmark.NodeTypeRow("TfLiteGpuDelegateV2", 1, 8.671, 100.0, 100.0,
                                                                 0.0, 1)]
    assert regular.timings_us == tflite_benchmark.RunStat(110, 8317, 10006, 7854, 10679, 8671.49, 590)
    assert regular.nodes_executed == 1 and regular.nodes_observed == 1

    rec = tflite_benchmark.to_record(run, component="unet", device="pixel")
    assert rec.median_ms is None  # benchmark_model prints no median: never substitute the mean
    assert (rec.mean_ms, rec.min_ms, rec.max_ms) == (8.68033, 7.863, 10.688)
    assert (rec.init_ms, rec.first_inference_ms, rec.warmup, rec.runs) == (1451.507, 11.147, 56, 110)
    assert rec.peak_memory_mb == 63.4883
    assert rec.extra["std_ms"] == 0.591
    assert rec.settings["num_threads"] == 1 and rec.settings["delegates"] == ["GPU"]
    assert [(o.name, o.ms, o.percent, o.count) for o in rec.ops] == [("TfLiteGpuDelegateV2", 8.671, 100.0, 1)]


def test_tflite_cros_two_runs_xnnpack_then_gpu():
    xnn, gpu = tflite_benchmark.parse_benchmark_model(fx("tflite_benchmark_model_cros_selected_lines.txt"))
    assert xnn.delegates == ["XNNPACK"]
    assert xnn.delegation == [{"delegate": "TfLiteXNNPackDelegate", "nodes_delegated": 58, "nodes_total": 58,
                               "partitions": 1}]
    assert xnn.session_init_ms == 3.337
    assert xnn.warmup == tflite_benchmark.RunStat(9, 81913, 55502, 55502, 81913, 58984.7, 8115)
    assert xnn.inference == tflite_benchmark.RunStat(1061, 56576, 56299, 54669, 60236, 56265.8, 982)
    assert (xnn.init_us, xnn.first_inference_us, xnn.warmup_avg_us, xnn.inference_avg_us) == (
        3337, 81913, 58984.7, 56265.8)
    assert xnn.peak_memory_monitored_mb == 93.2383
    assert gpu.delegates == ["GPU"]
    assert gpu.delegation[0]["delegate"] == "TfLiteGpuDelegateV2"
    assert gpu.gpu_delegate_kernels == 1 and gpu.fully_delegated is True
    assert gpu.session_init_ms == 842.225
    assert gpu.warmup == tflite_benchmark.RunStat(13, 115098, 36666, 32079, 115098, 40199.8, 21694)
    assert gpu.inference == tflite_benchmark.RunStat(1694, 35688, 33419, 30394, 42335, 35134.9, 1733)
    assert (gpu.init_us, gpu.first_inference_us, gpu.warmup_avg_us, gpu.inference_avg_us) == (
        842225, 115098, 40199.8, 35134.9)
    assert gpu.peak_memory_monitored_mb == 74.6641
    rec = tflite_benchmark.to_record(gpu, component="unet")
    assert (rec.mean_ms, rec.min_ms, rec.max_ms, rec.init_ms, rec.peak_memory_mb) == (
        35.1349, 30.394, 42.335, 842.225, 74.6641)
    assert rec.extra["peak_memory_source"] == "periodic monitoring"


def test_tflite_memory_lines():
    (run,) = tflite_benchmark.parse_benchmark_model(fx("tflite_benchmark_model_memory_lines.txt"))
    assert (run.memory_delta_init_mb, run.memory_delta_overall_mb) == (2.43359, 8.67578)
    assert run.peak_memory_monitored_mb == 13.1797
    assert run.memory_at_end_mb == {"VmRSS": 13, "RssAnnon": 7, "RssFile + RssShmem": 6}
    with pytest.raises(ParseError, match="no 'Inference timings"):
        tflite_benchmark.to_record(run, component="x")


def test_tflite_mcu_summary_printed_twice_is_one_run():
    (run,) = tflite_benchmark.parse_benchmark_model(fx("tflite_benchmark_model_mcu_v2x.txt"))
    assert run.params["Use caching"] == "0" and run.params["Min num runs"] == "50"
    assert run.model_path is None and run.model_size_mb == 0.005912 and run.session_init_ms == 1.461
    assert run.warmup == tflite_benchmark.RunStat(7837, 114, 32, 28, 114, 31.462, 1)
    assert run.inference == tflite_benchmark.RunStat(15523, 51, 32, 28, 51, 31.4759, 0)
    assert (run.init_us, run.first_inference_us, run.warmup_avg_us, run.inference_avg_us) == (
        1461, 114, 31.462, 31.4759)


def test_tflite_readme_excerpt_start_column_and_old_summary():
    (run,) = tflite_benchmark.parse_benchmark_model(fx("tflite_readme_op_profiling_excerpt_with_start_col.txt"))
    (prof,) = run.profiles
    assert [r.name for r in prof.run_order] == [
        "[MobilenetV1/MobilenetV1/Conv2d_0/Relu6]", "[MobilenetV1/MobilenetV1/Conv2d_1_pointwise/Relu6]",
        "[MobilenetV1/MobilenetV1/Conv2d_2_depthwise/Relu6]", "[MobilenetV1/Predictions/Softmax]"]
    assert prof.run_order[1] == tflite_benchmark.OpRow("CONV_2D", 6.107, 6.107, 0.153, 0.314, 0.0, 0,
                                                       "[MobilenetV1/MobilenetV1/Conv2d_1_pointwise/Relu6]", 6.421)
    assert prof.run_order[3].start_ms == 79.443 and prof.run_order[3].cdf_percent == 1.993
    assert prof.top_by_time[0].name.endswith("Conv2d_3_pointwise/Relu6]") and prof.top_by_time[0].avg_ms == 6.652
    assert [(r.node_type, r.count, r.avg_ms, r.avg_percent, r.cdf_percent) for r in prof.by_node_type] == [
        ("CONV_2D", 15, 1.406, 89.270, 89.270), ("DEPTHWISE_CONV_2D", 13, 0.169, 10.730, 100.0),
        ("SOFTMAX", 1, 0.0, 0.0, 100.0), ("RESHAPE", 1, 0.0, 0.0, 100.0), ("AVERAGE_POOL_2D", 1, 0.0, 0.0, 100.0)]
    assert prof.nodes_executed == 31 and prof.nodes_observed == 31
    assert prof.timings_us == tflite_benchmark.RunStat(50, 79449, 81350, 77385, 88213, 79732, 1929)
    assert (run.warmup_avg_us, run.init_us, run.inference_avg_us) == (83235, 38467, 79760.9)
    rec = tflite_benchmark.to_record(run, component="m")
    assert rec.mean_ms == 79.7609 and rec.init_ms == 38.467 and rec.ops[0].name == "CONV_2D"


def test_tflite_apk_logcat_lines_are_two_runs():
    runs = tflite_benchmark.parse_benchmark_model(fx("tflite_benchmark_apk_logcat_lines.txt"))
    assert [(r.init_us, r.first_inference_us, r.warmup_avg_us, r.inference_avg_us) for r in runs] == [
        (1007529, 4098, 1686.59, 1687.92), (5685, 18535, 14462.3, 14575.2)]


def test_tflite_real_logcat_threadtime_prefix():
    text = ("05-01 10:00:00.123  4321  4350 I tflite  : Initialized session in 12.5ms.\n"
            "05-01 10:00:01.123  4321  4350 I tflite  : count=3 first=10 curr=11 min=10 max=12 avg=11 std=1\n"
            "05-01 10:00:02.123  4321  4350 I tflite  : count=20 first=9 curr=9 min=8 max=10 avg=9.1 std=0\n"
            "05-01 10:00:02.124  4321  4350 I tflite  : Inference timings in us: Init: 12500, First inference: 10, "
            "Warmup (avg): 11, Inference (avg): 9.1\n")
    (run,) = tflite_benchmark.parse_benchmark_model(text)
    assert run.session_init_ms == 12.5 and run.inference.count == 20 and run.inference_avg_us == 9.1


# --------------------------------------------------------------------------------------------- litert-benchmark


def test_litert_result_json_stdout_and_log_agree():
    js = litert_benchmark.parse_result_json(fx("litert_benchmark_result.json"))
    assert js.model == "tiny_conv.tflite" and js.model_size_mb == 0.0 and js.accelerators == ["CPU"]
    assert js.signature == "<placeholder signature>" and js.fully_accelerated is True and js.num_threads == 1
    assert js.latency_ms == {"init_ms": 4.64, "warmup_first_ms": 0.22, "warmup_avg_ms": 0.08, "avg_ms": 0.05,
                             "min_ms": 0.04, "max_ms": 0.09, "median_ms": 0.04, "std_ms": 0.01, "p5_ms": 0.04,
                             "p95_ms": 0.06}
    assert (js.num_warmup_runs, js.num_runs, js.throughput_mb_s) == (5, 50, 993.97)
    out = litert_benchmark.parse_stdout(fx("litert_benchmark_stdout.txt"))
    assert out.latency_ms == js.latency_ms
    assert (out.num_warmup_runs, out.num_runs, out.throughput_mb_s, out.fully_accelerated) == (5, 50, 993.97, True)
    log = litert_benchmark.parse_log(fx("litert_benchmark_stderr.txt"))
    assert log == {"model": "tiny_conv.tflite", "model_size_mb": 0.0, "accelerators": "CPU", "num_threads": 1,
                   "warmup_runs": 5, "num_runs": 50, "environment_ms": 2.5, "model_load_ms": 4.6, "signatures": 1,
                   "signature": "<placeholder signature>", "fully_accelerated": "True",
                   "result_json": "litert_benchmark_result.json"}
    rec = litert_benchmark.to_record(js, component="vae_decoder")
    assert (rec.median_ms, rec.mean_ms, rec.min_ms, rec.max_ms, rec.init_ms, rec.first_inference_ms) == (
        0.04, 0.05, 0.04, 0.09, 4.64, 0.22)
    assert (rec.warmup, rec.runs, rec.p90_ms) == (5, 50, None)
    assert rec.extra["p95_ms"] == 0.06


# --------------------------------------------------------------------------------------------- onnxruntime_perf_test


def test_ort_perf_test_123():
    r = ort_perf_test.parse_perf_test(fx("ort_perf_test_1.23_arm_sme2.txt"))
    assert r.intra_op_threads == 1 and r.spinning_disabled
    assert r.values == {"session_creation_ms": 217.932, "first_inference_ms": 196, "total_inference_time_s": 0.49481,
                        "requests": 5, "average_ms": 98.961997, "total_run_time_s": 0.494854,
                        "inferences_per_second": 10.104, "avg_cpu_percent": 11, "peak_working_set_bytes": 271122432,
                        "runs": 5}
    assert r.latency_ms == {"min": 95.8204, "max": 101.519, "p50": 99.5086, "p90": 101.519, "p95": 101.519,
                            "p99": 101.519, "p999": 101.519}
    rec = ort_perf_test.to_record(r, component="unet")
    assert (rec.median_ms, rec.p90_ms, rec.mean_ms, rec.min_ms, rec.max_ms) == (
        99.5086, 101.519, 98.961997, 95.8204, 101.519)
    assert (rec.init_ms, rec.first_inference_ms, rec.runs) == (217.932, 196, 5)
    assert rec.peak_memory_mb == approx(271122432 / 2**20)


def test_ort_perf_test_older_acl():
    r = ort_perf_test.parse_perf_test(fx("ort_perf_test_older_acl.txt"))
    assert r.values["average_ms"] == 17.735 and r.values["inferences_per_second"] == 56.3415
    assert r.values["session_creation_ms"] == 27.3071 and r.values["first_inference_ms"] == 20
    assert r.values["avg_cpu_percent"] == 98 and r.values["peak_working_set_bytes"] == 35299328
    assert r.values["requests"] == 8 and r.values["runs"] == 8
    assert r.values["total_inference_time_s"] == 0.14188 and r.values["total_run_time_s"] == 0.141991
    assert r.latency_ms == {"min": 15.9831, "max": 23.2702, "p50": 16.7086, "p90": 23.2702, "p95": 23.2702,
                            "p99": 23.2702, "p999": 23.2702}


def test_ort_perf_test_ancient_readme():
    r = ort_perf_test.parse_perf_test(fx("ort_perf_test_ancient_readme.txt"))
    assert r.values == {"total_time_cost_s": 58.8053, "requests": 1000, "average_ms": 58.8053,
                        "total_run_time_s": 58.8102}
    assert r.latency_ms == {"min": 55.9777, "max": 62.3472, "p50": 58.7108, "p90": 59.9845, "p95": 60.5676,
                            "p99": 61.9517, "p999": 62.3472}


def test_ort_perf_test_conflicting_duplicates_fail():
    text = fx("ort_perf_test_older_acl.txt").replace("Avg CPU usage:98", "Avg CPU usage:97")
    with pytest.raises(ParseError, match="printed twice"):
        ort_perf_test.parse_perf_test(text)


# --------------------------------------------------------------------------------------------- ORT profiler JSON


def test_ort_profile_131():
    p = ort_profile.parse_ort_profile(fx("ort_profile_cpu_1.31.1.json"))
    assert (p.model_loading_us, p.session_initialization_us) == (311, 5546)
    assert p.run_us == [534, 39, 54] and p.executor_us == [498, 34, 52]
    assert p.pids == {13099}
    conv = p.nodes["r_nchwc"]
    assert conv.op_name == "Conv" and conv.provider == "CPUExecutionProvider"
    assert conv.durations_us == [377, 16, 12]
    assert (conv.output_size, conv.activation_size, conv.parameter_size) == (65536, 12288, 1792)
    assert conv.input_type_shape == [{"float": [1, 3, 32, 32]}, {"float": [16, 3, 3, 3]}, {"float": [16]}]
    assert conv.memory == {"mem_in_use_peak": 98624, "mem_bytes_in_use": 98368, "mem_arena_held": 1048640,
                           "mem_bytes_requested_in_use": 98368}
    assert p.nodes["ReorderOutput"].durations_us == [93, 5, 5]
    assert p.nodes["gap0"].durations_us == [13, 5, 4] and p.nodes["gap0"].op_name == "GlobalAveragePool"
    rec = ort_profile.to_record(p, component="tiny")
    assert (rec.median_ms, rec.mean_ms, rec.min_ms, rec.max_ms, rec.runs) == (0.054, approx(0.209), 0.039, 0.534, 3)
    assert rec.p90_ms == approx(0.054 + 0.8 * (0.534 - 0.054))
    assert rec.init_ms == approx(5.857) and rec.first_inference_ms == 0.534
    assert [(o.name, o.count) for o in rec.ops] == [("Conv", 1), ("ReorderOutput", 1), ("GlobalAveragePool", 1)]
    assert rec.ops[0].ms == approx((377 + 16 + 12) / 3 / 1000)
    assert sum(o.percent for o in rec.ops) == approx(100.0)


def test_ort_profile_excerpts_fences_and_session_events():
    p = ort_profile.parse_ort_profile(fx("ort_profile_node_events_with_fences_excerpt.txt"))
    assert list(p.nodes) == ["If_0_then_branch__Inline_0__/stft/padding/Pad"]
    node = p.nodes["If_0_then_branch__Inline_0__/stft/padding/Pad"]
    assert node.durations_us == [6] and node.op_name == "Pad" and node.output_size == 2560
    assert node.parameter_size == 32 and node.activation_size == 2304 and not p.complete_file
    with pytest.raises(ParseError, match="no model_run"):
        ort_profile.to_record(p, component="x")
    s = ort_profile.parse_ort_profile(fx("ort_profile_session_events_mql5_excerpt.json.txt"))
    assert (s.model_loading_us, s.session_initialization_us, s.pids) == (698, 15496, {34368})


def test_ort_profile_unclosed_array_is_an_error():
    text = fx("ort_profile_cpu_1.31.1.json").rstrip().rstrip("]")
    with pytest.raises(ParseError, match="not closed"):
        ort_profile.parse_ort_profile(text)


# --------------------------------------------------------------------------------------------- trtexec


def _stats(log, name):
    s = log.metrics[name]
    return (s.min, s.max, s.mean, s.median, s.percentiles)


def test_trtexec_861_summary():
    log = trtexec.parse_trtexec_log(fx("trtexec_8.6.1_perf_summary_p90_95_99.txt"))
    assert log.throughput_qps == 65.7372
    assert _stats(log, "Latency") == (15.1062, 45.0152, 27.5067, 29.2732, {90: 29.739, 95: 30.0433, 99: 30.3047})
    assert _stats(log, "Enqueue Time") == (7.62402, 16.1389, 9.51405, 9.28607, {90: 10.0674, 95: 10.4929,
                                                                               99: 12.9241})
    assert _stats(log, "H2D Latency") == (0.119141, 24.7606, 12.4057, 14.269, {90: 14.4882, 95: 14.7051,
                                                                              99: 14.7982})
    assert _stats(log, "GPU Compute Time") == (14.9122, 20.2374, 15.0811, 14.9981, {90: 15.3064, 95: 15.4503,
                                                                                   99: 15.5051})
    assert _stats(log, "D2H Latency") == (0.0163574, 0.0310059, 0.0199066, 0.0185547, {90: 0.026123, 95: 0.0284424,
                                                                                       99: 0.0297852})
    assert (log.total_host_walltime_s, log.total_gpu_compute_s) == (3.05763, 3.0313)
    rec = trtexec.to_record(log, component="unet", precision="fp16")
    assert (rec.median_ms, rec.p90_ms, rec.mean_ms, rec.min_ms, rec.max_ms) == (29.2732, 29.739, 27.5067, 15.1062,
                                                                                45.0152)
    assert rec.extra["GPU Compute Time"]["median_ms"] == 14.9981 and rec.extra["p99_ms"] == 30.3047


def test_trtexec_82_end_to_end_no_p90():
    log = trtexec.parse_trtexec_log(fx("trtexec_8.2_perf_summary_end_to_end.txt"))
    assert log.throughput_qps == 797.639
    for name in ("Latency", "End-to-End Host Latency", "GPU Compute Time"):
        assert _stats(log, name) == (0.848877, 12.2706, 0.942851, 0.899048, {99: 1.80432})
    assert _stats(log, "Enqueue Time") == (0.0012207, 0.104736, 0.0169319, 0.017334, {99: 0.0490723})
    assert _stats(log, "H2D Latency") == (0, 0, 0, 0, {99: 0}) == _stats(log, "D2H Latency")
    assert (log.total_host_walltime_s, log.total_gpu_compute_s) == (3.00387, 2.25907)
    rec = trtexec.to_record(log, component="u")
    assert rec.median_ms == 0.899048 and rec.p90_ms is None  # only the 99th percentile was printed


def test_trtexec_traces():
    log10 = trtexec.parse_trtexec_log(fx("trtexec_trace_details_10x.txt"))
    assert (log10.warmup_queries, log10.warmup_ms, log10.timed_queries, log10.timed_s) == (135, 200, 2077, 3.0039)
    assert log10.trace == [trtexec.TraceAverage(10, 1.4891, 1.52709, None, 0.251123),
                           trtexec.TraceAverage(10, 1.39653, 1.43655, None, 0.260228),
                           trtexec.TraceAverage(10, 1.41783, 1.45835, None, 0.263342)]
    log7 = trtexec.parse_trtexec_log(fx("trtexec_trace_details_7x_8.3_end_to_end.txt"))
    assert (log7.warmup_queries, log7.warmup_ms, log7.timed_queries, log7.timed_s) == (0, 200, 0, 3.01861)
    assert log7.trace == [trtexec.TraceAverage(10, 11.6003, 11.7851, 11.8375, 6.83557),
                          trtexec.TraceAverage(10, 11.0905, 11.2746, 11.2852, 6.02471)]
    for log in (log10, log7):  # trace averages are not a median: no record from them
        with pytest.raises(ParseError, match="only trace averages"):
            trtexec.to_record(log, component="u")


def test_trtexec_dump_profile_table():
    log = trtexec.parse_trtexec_log(fx("trtexec_dumpProfile_table.txt"))
    assert log.profile_iterations == 290
    name = "{ForeignNode[/Constant_7_output_0 + ONNXTRT_Broadcast.../Einsum_1]}"
    assert log.layers == [
        trtexec.LayerTime(f"Reformatting CopyNode for Input Tensor 0 to {name}", 29.17, 0.1006, 0.0973, 1.7),
        trtexec.LayerTime(name, 1667.74, 5.7508, 5.7308, 97.7),
        trtexec.LayerTime(f"Reformatting CopyNode for Output Tensor 0 to {name}", 10.39, 0.0358, 0.0338, 0.6)]
    assert log.layers_total == trtexec.LayerTime("Total", 1707.30, 5.8873, 5.8619, 100.0)


def test_trtexec_export_profile_json():
    new = trtexec.parse_export_profile(fx("trtexec_exportProfile_with_median.json"))
    assert new.iterations == 41400 and new.complete_file
    assert new.layers == [trtexec.LayerTime("/conv1/Conv + /act1/Relu", 1160.78, 0.0280382, 0.027872, 100)]
    old = trtexec.parse_export_profile(fx("trtexec_exportProfile_without_median_older.json"))
    assert old.iterations == 625 and not old.complete_file  # the excerpt lacks its closing `]`
    assert [(x.name, x.total_ms, x.avg_ms, x.median_ms, x.percent) for x in old.layers] == [
        ("Reformatting CopyNode for Input Tensor 0 to Conv_0 + PWN(Clip_3)", 36.6844, 0.058695, None, 1.20497),
        ("Conv_0 + PWN(Clip_3)", 41.4232, 0.0662771, None, 1.36062),
        ("Conv_4 + PWN(Clip_7)", 68.3092, 0.109295, None, 2.24374),
        ("Reformatting CopyNode for Input Tensor 0 to Conv_8", 0, 0, None, 0),
        ("Conv_8", 39.2477, 0.0627963, None, 1.28917)]


TRT7_LOG = """\
&&&& RUNNING TensorRT.trtexec # trtexec --onnx=unet.onnx --fp16
[10/20/2020-19:56:20] [I] === Device Information ===
[10/20/2020-19:56:20] [I] Selected Device: Xavier
[10/20/2020-19:56:20] [I] Compute Capability: 7.2
[10/20/2020-19:56:29] [I] Warmup completed 20 queries over 200 ms
[10/20/2020-19:56:29] [I] Timing trace has 600 queries over 3.00956 s
[10/20/2020-19:56:29] [I] Host Latency
[10/20/2020-19:56:29] [I] min: 4.34 ms (end to end 4.35 ms)
[10/20/2020-19:56:29] [I] max: 7.13 ms (end to end 7.14 ms)
[10/20/2020-19:56:29] [I] mean: 4.52 ms (end to end 4.54 ms)
[10/20/2020-19:56:29] [I] median: 4.50 ms (end to end 4.51 ms)
[10/20/2020-19:56:29] [I] percentile: 5.47 ms at 99% (end to end 6.10 ms at 99%)
[10/20/2020-19:56:29] [I] throughput: 0 qps
[10/20/2020-19:56:29] [I] walltime: 3.00956 s
[10/20/2020-19:56:29] [I] Enqueue Time
[10/20/2020-19:56:29] [I] min: 2.39 ms
[10/20/2020-19:56:29] [I] max: 4.90 ms
[10/20/2020-19:56:29] [I] median: 2.64 ms
[10/20/2020-19:56:29] [I] GPU Compute
[10/20/2020-19:56:29] [I] min: 4.24 ms
[10/20/2020-19:56:29] [I] max: 7.02 ms
[10/20/2020-19:56:29] [I] mean: 4.42 ms
[10/20/2020-19:56:29] [I] median: 4.40 ms
[10/20/2020-19:56:29] [I] percentile: 5.37 ms at 99%
[10/20/2020-19:56:29] [I] total compute time: 2.93 s
&&&& PASSED TensorRT.trtexec # trtexec --onnx=unet.onnx --fp16
"""


def test_trtexec_7_multiline_blocks():
    log = trtexec.parse_trtexec_log(TRT7_LOG)
    host = log.metrics["Host Latency"]
    assert (host.min, host.max, host.mean, host.median, host.percentiles) == (4.34, 7.13, 4.52, 4.50, {99: 5.47})
    assert host.end_to_end.median == 4.51 and host.end_to_end.percentiles == {99: 6.10}
    assert _stats(log, "Enqueue Time") == (2.39, 4.90, None, 2.64, {})
    assert _stats(log, "GPU Compute") == (4.24, 7.02, 4.42, 4.40, {99: 5.37})
    assert (log.throughput_qps, log.total_host_walltime_s, log.total_gpu_compute_s) == (0, 3.00956, 2.93)
    assert log.status == "PASSED" and log.command == "trtexec --onnx=unet.onnx --fp16"
    assert log.options["Device Information"] == {"Selected Device": "Xavier", "Compute Capability": "7.2"}
    rec = trtexec.to_record(log, component="unet")
    assert (rec.median_ms, rec.mean_ms, rec.warmup, rec.runs) == (4.50, 4.52, 20, 600)


def test_trtexec_version_build_and_failure():
    log = trtexec.parse_trtexec_log(
        "&&&& RUNNING TensorRT.trtexec [TensorRT v8601] # trtexec --onnx=a.onnx\n"
        "[I] Engine built in 35.1357 sec.\n[I] Created engine with size: 12.5 MiB\n"
        "[I] Engine deserialized in 0.0285 sec.\n"
        + fx("trtexec_8.6.1_perf_summary_p90_95_99.txt")
        + "&&&& PASSED TensorRT.trtexec [TensorRT v8601] # trtexec --onnx=a.onnx\n")
    assert log.version == "8.6.1" and log.status == "PASSED"
    assert (log.engine_build_s, log.engine_size_mib, log.engine_deserialize_s) == (35.1357, 12.5, 0.0285)
    rec = trtexec.to_record(log, component="u")
    assert rec.tool_version == "8.6.1" and rec.init_ms == 28.5 and rec.extra["engine_build_s"] == 35.1357
    assert trtexec.parse_trtexec_log("&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # x\n").version == "10.3.0"
    failed = trtexec.parse_trtexec_log(fx("trtexec_8.2_perf_summary_end_to_end.txt") + "&&&& FAILED TensorRT.trtexec\n")
    with pytest.raises(ParseError, match="FAILED"):
        trtexec.to_record(failed, component="u")


# --------------------------------------------------------------------------------------------- tegrastats


def test_tegrastats_boards():
    log = tegrastats.parse_tegrastats(fx("tegrastats_samples_by_board.txt"))
    nano, tx1, tx2, agx = log.samples
    assert (nano.ram_used_mb, nano.ram_total_mb, nano.lfb) == (613, 3964, (634, 4))
    assert (nano.swap_used_mb, nano.swap_total_mb, nano.swap_cached_mb) == (0, 1982, 0)
    assert [(c.load_percent, c.freq_mhz) for c in nano.cpus] == [(2, 102), (1, 102), (0, 102), (0, 102)]
    assert nano.loads == {"EMC_FREQ": (0, []), "GR3D_FREQ": (0, [])}
    assert nano.temps_c == {"PLL": 39, "CPU": 40.5, "PMIC": 100, "GPU": 41, "AO": 46, "thermal": 41}
    assert nano.rails_mw == {"POM_5V_IN": (943, 943), "POM_5V_GPU": (0, 0), "POM_5V_CPU": (123, 123)}
    assert (tx1.iram_used_kb, tx1.iram_total_kb, tx1.iram_lfb_kb) == (0, 252, 252)
    assert tx1.loads == {"EMC_FREQ": (7, [408]), "GR3D_FREQ": (0, [76])} and tx1.clocks_mhz == {"APE": 25}
    assert tx1.temps_c["Tdiode"] == 42.75 and tx1.rails_mw["VDD_IN"] == (2532, 2698)
    assert tx1.rails_mw["VDD_CPU"] == (76, 178) and tx1.rails_mw["VDD_GPU"] == (19, 19)
    assert [c.load_percent for c in tx2.cpus] == [2, None, None, None, None, None] and tx2.cpus[0].freq_mhz == 345
    assert tx2.clocks_mhz == {"APE": 150} and tx2.temps_c["BCPU"] == 35 and tx2.temps_c["MCPU"] == 35
    assert tx2.rails_mw == {"VDD_IN": (2003, 2658), "VDD_CPU": (320, 518), "VDD_GPU": (400, 735),
                            "VDD_SOC": (400, 415), "VDD_WIFI": (0, 0), "VDD_DDR": (240, 348)}
    assert len(agx.cpus) == 8 and agx.cpus[2].load_percent == 2 and agx.cpus[0].freq_mhz == 1190
    assert agx.rails_mw == {"GPU": (0, 0), "CPU": (216, 216), "SOC": (864, 864), "CV": (0, 0), "VDDRQ": (144, 144),
                            "SYS5V": (1889, 1889)}
    assert agx.temps_c == {"AO": 32.5, "GPU": 32, "Tboard": 32, "Tdiode": 34.75, "AUX": 31.5, "CPU": 33.5,
                           "thermal": 32.9, "PMIC": 100}


def test_tegrastats_orin_jp6_and_summary():
    log = tegrastats.parse_tegrastats(fx("tegrastats_orin_nano_jp6.txt"))
    a, b = log.samples
    assert a.timestamp == "07-29-2026 18:00:27" and b.timestamp == "07-29-2026 18:00:28"
    assert (a.ram_used_mb, a.ram_total_mb, a.lfb, a.swap_used_mb, a.swap_total_mb) == (2272, 7620, (4, 4), 221, 3810)
    assert [c.freq_mhz for c in a.cpus] == [729, 1036, 1036, 1036, 729, 729]
    assert a.temps_c == {"cpu": 54.937, "soc2": 55.562, "soc0": 56.156, "gpu": 55.468, "tj": 56.656, "soc1": 56.656}
    assert a.rails_mw == {"VDD_IN": (4673, 4673), "VDD_CPU_GPU_CV": (527, 527), "VDD_SOC": (1339, 1339)}
    summary = log.summary()
    assert summary["samples"] == 2 and summary["ram_used_mb_max"] == 2272
    assert summary["temp_c_max"]["gpu"] == 55.656 and summary["power_mw_mean"]["VDD_IN"] == 4673


def test_tegrastats_cut_last_line_is_dropped_and_garbage_fails():
    text = fx("tegrastats_orin_nano_jp6.txt")
    cut = text[: text.rindex("VDD_SOC") + 5]
    log = tegrastats.parse_tegrastats(cut)
    assert len(log.samples) == 1 and log.dropped_partial_line
    with pytest.raises(ParseError, match="unknown or cut field"):
        tegrastats.parse_tegrastats(text.replace("VDD_IN 4673mW/4673mW", "VDD_IN 46#3mW/4673mW", 1))


# --------------------------------------------------------------------------------------------- Android dumpsys


def test_dumpsys_meminfo():
    m = android_dumpsys.parse_meminfo(fx("android_dumpsys_meminfo_app.txt"))
    assert (m.pid, m.process, m.uptime_ms, m.realtime_ms) == (21936, "com.android.launcher3", 277172845, 423847246)
    assert m.columns == ["Pss Total", "Pss Clean", "Shared Dirty", "Private Dirty", "Shared Clean", "Private Clean",
                         "Swap Dirty", "Rss Total", "Heap Size", "Heap Alloc", "Heap Free"]
    assert list(m.rows["Native Heap"].values()) == [24482, 0, 2692, 24380, 0, 0, 0, 27072, 39580, 24489, 11037]
    assert list(m.rows["Other dev"].values()) == [136, 0, 216, 0, 0, 136, 0, 352]
    assert list(m.rows["TOTAL"].values()) == [105529, 632, 30100, 95048, 61056, 848, 0, 187052, 68231, 28564, 35613]
    assert len(m.rows) == 19 and m.rows["EGL mtrack"]["Pss Total"] == 51348
    assert m.app_summary == {"Java Heap": {"Pss": 5604, "Rss": 26492}, "Native Heap": {"Pss": 24380, "Rss": 27072},
                             "Code": {"Pss": 880, "Rss": 65056}, "Stack": {"Pss": 976, "Rss": 988},
                             "Graphics": {"Pss": 61692, "Rss": 61692}, "Private Other": {"Pss": 2364},
                             "System": {"Pss": 9633}, "Unknown": {"Rss": 5752}}
    assert m.totals_kb == {"TOTAL PSS": 105529, "TOTAL RSS": 187052, "TOTAL SWAP": 0}
    assert m.total_pss_mb == approx(105529 / 1024)


def test_dumpsys_thermalservice():
    t = android_dumpsys.parse_thermalservice(fx("android_dumpsys_thermalservice_excerpt.txt"))
    assert [(x.name, x.value_c, x.type, x.status) for x in t.temperatures] == [
        ("CPU0", 62.500004, 0, 0), ("CPU1", 62.500004, 0, 0), ("GPU", 61.000004, 1, 0)]
    s = android_dumpsys.parse_thermalservice(fx("android_dumpsys_thermalservice_test_sample.txt"))
    assert s.status_override is False and s.cooling_devices == {"thermal-cpufreq-0": 0}
    assert [x.name for x in s.temperatures] == ["CPU0", "CPU1", "GPU"]  # the cached SKIN 99.9 is stale: ignored
    assert s.max_c() == 62.500004


def test_getprop():
    props = android_dumpsys.parse_getprop("[ro.product.model]: [Pixel 8]\n[ro.soc.model]: [Tensor G3]\n[x]: []\n")
    assert props == {"ro.product.model": "Pixel 8", "ro.soc.model": "Tensor G3", "x": ""}


# --------------------------------------------------------------------------------------------- app report

APP_REPORT = {
    "format": "edgediff-app-benchmark/1",
    "app": {"name": "EdgeDiff", "version": "0.1.0"},
    "device": {"model": "iPhone16,1", "name": "iPhone 15 Pro", "system": "iOS 18.2"},
    "bundle": {"backend": "coreml", "precision": "fp16"},
    "results": [
        {"component": "unet", "compute_units": "cpuAndNeuralEngine", "load_ms": 1843.2, "first_inference_ms": 412.9,
         "warmup": 3, "latencies_ms": [101.0, 99.0, 100.0, 120.0, 98.0], "peak_memory_mb": 812.4,
         "thermal_state": {"start": "nominal", "end": "fair"}},
        {"component": "vae_decoder", "compute_units": "all", "median_ms": 55.5, "p90_ms": 60.1, "runs": 20},
    ],
}


def test_app_report(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(APP_REPORT))
    unet, vae = import_report(path, "app")
    assert (unet.component, unet.backend, unet.precision, unet.device, unet.tool) == (
        "unet", "coreml", "fp16", "iPhone 15 Pro", "app")
    assert (unet.median_ms, unet.min_ms, unet.max_ms, unet.runs, unet.warmup) == (100.0, 98.0, 120.0, 5, 3)
    assert unet.p90_ms == approx(101.0 + 0.6 * (120.0 - 101.0)) and unet.mean_ms == approx(103.6)
    assert (unet.init_ms, unet.first_inference_ms, unet.peak_memory_mb) == (1843.2, 412.9, 812.4)
    assert unet.settings == {"compute_units": "cpuAndNeuralEngine"} and unet.tool_version == "0.1.0"
    assert unet.extra["thermal_state"] == {"start": "nominal", "end": "fair"}
    assert (vae.median_ms, vae.p90_ms, vae.runs, vae.mean_ms) == (55.5, 60.1, 20, None)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(format="other/1"), "expected format"),
    (lambda d: d["results"][0].update(latencies_ms=[1.0, "fast"]), "finite number"),
    (lambda d: d["results"][0].update(median_ms=5.0), "disagrees"),
    (lambda d: d["results"][1].pop("median_ms"), "neither latencies_ms nor median_ms"),
    (lambda d: d["results"][0].update(latency=1), "unknown keys"),
    (lambda d: d.pop("device"), "device.model"),
])
def test_app_report_bad(mutate, message):
    data = json.loads(json.dumps(APP_REPORT))
    mutate(data)
    with pytest.raises(ParseError, match=message):
        app_report.to_records(app_report.parse_app_report(json.dumps(data)))


def test_app_report_truncated():
    with pytest.raises(ParseError, match="not valid JSON"):
        app_report.parse_app_report(json.dumps(APP_REPORT)[:-40])


# --------------------------------------------------------------------------------------------- import, truncation

IMPORTABLE = [
    ("tflite_benchmark_model_gpu_opprofiling_v2.4era.txt", "benchmark_model"),
    ("tflite_benchmark_model_cros_selected_lines.txt", "benchmark_model"),
    ("tflite_benchmark_model_mcu_v2x.txt", "benchmark_model"),
    ("tflite_readme_op_profiling_excerpt_with_start_col.txt", "benchmark_model"),
    ("tflite_benchmark_apk_logcat_lines.txt", "benchmark_model"),
    ("litert_benchmark_result.json", "litert-benchmark"),
    ("litert_benchmark_stdout.txt", "litert-benchmark"),
    ("ort_perf_test_1.23_arm_sme2.txt", "onnxruntime_perf_test"),
    ("ort_perf_test_older_acl.txt", "onnxruntime_perf_test"),
    ("ort_perf_test_ancient_readme.txt", "onnxruntime_perf_test"),
    ("ort_profile_cpu_1.31.1.json", "ort-profile"),
    ("trtexec_8.6.1_perf_summary_p90_95_99.txt", "trtexec"),
    ("trtexec_8.2_perf_summary_end_to_end.txt", "trtexec"),
    ("mlperf_loadgen_summary_singlestream_invalid.txt", "mlperf"),
    ("mlperf_mobile_mlperf_log_detail_lines.txt", "mlperf"),
]


def _leaves(obj, prefix=""):
    """Flatten records / parse results into {path: leaf}."""
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_leaves(v, f"{prefix}/{k}"))
        return out
    if isinstance(obj, (list, tuple)):
        out = {}
        for i, v in enumerate(obj):
            out.update(_leaves(v, f"{prefix}[{i}]"))
        return out
    if isinstance(obj, set):
        return {prefix: frozenset(obj)}
    return {prefix: obj}


def _assert_never_wrong(partial, full, where):
    """Every number the truncated parse yields must equal the same number of the complete parse."""
    full_leaves = _leaves(full)
    for path, value in _leaves(partial).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and "/extra/" not in path:
            assert path in full_leaves, f"{where}: {path}={value} not in the complete parse"
            assert full_leaves[path] == value, f"{where}: {path}={value}, complete parse says {full_leaves[path]}"


@pytest.mark.parametrize("name, tool", IMPORTABLE)
def test_import_and_every_truncation_is_error_or_consistent(name, tool, tmp_path):
    full = import_report(FIXTURES / name, tool, component="c", device="d")
    assert full and all(r.median_ms is not None or r.mean_ms is not None for r in full)
    text = fx(name)
    step = max(1, len(text) // 250)
    errors = 0
    for cut in range(1, len(text) - 1, step):
        path = tmp_path / "cut.txt"
        path.write_text(text[:cut])
        try:
            partial = import_report(path, tool, component="c", device="d")
        except ParseError:
            errors += 1
            continue
        # a cut output may lose whole records or lines, never change a number it still shows
        assert len(partial) <= len(full)
        for p, f in zip(partial, full):
            _assert_never_wrong(p, f, f"{name} cut at {cut}")
    assert errors > 0


@pytest.mark.parametrize("name, parse", [
    ("tegrastats_samples_by_board.txt", tegrastats.parse_tegrastats),
    ("tegrastats_orin_nano_jp6.txt", tegrastats.parse_tegrastats),
    ("android_dumpsys_meminfo_app.txt", android_dumpsys.parse_meminfo),
    ("android_dumpsys_thermalservice_test_sample.txt", android_dumpsys.parse_thermalservice),
    ("trtexec_dumpProfile_table.txt", trtexec.parse_trtexec_log),
    ("trtexec_trace_details_10x.txt", trtexec.parse_trtexec_log),
    ("litert_benchmark_stderr.txt", litert_benchmark.parse_log),
    ("qaihm_profile_job_summary_text.txt", qaihm.parse_job_summaries),
])
def test_side_parsers_truncation_never_wrong(name, parse):
    text = fx(name)
    full = parse(text)
    step = max(1, len(text) // 200)
    for cut in range(1, len(text) - 1, step):
        try:
            partial = parse(text[:cut])
        except ParseError:
            continue
        _assert_never_wrong(partial, full, f"{name} cut at {cut}")


@pytest.mark.parametrize("name, tool, garble", [
    ("ort_perf_test_1.23_arm_sme2.txt", "onnxruntime_perf_test", ("P50 Latency: 0.0995086 s", "P50 Latency: 0.09x5 s")),
    ("trtexec_8.6.1_perf_summary_p90_95_99.txt", "trtexec", ("median = 29.2732 ms", "median = 29.2732")),
    ("tflite_benchmark_model_cros_selected_lines.txt", "benchmark_model",
     ("Inference (avg): 56265.8", "Inference (avg): 5626?.8")),
    ("tflite_benchmark_model_gpu_opprofiling_v2.4era.txt", "benchmark_model", ("\t   100.000%\t", "\t   100.000\t")),
    ("litert_benchmark_result.json", "litert-benchmark", ('"median_ms": 0.04', '"median_ms": "0.04"')),
])
def test_garbled_lines_fail_clearly(name, tool, garble, tmp_path):
    text = fx(name)
    assert garble[0] in text
    path = tmp_path / "garbled.txt"
    path.write_text(text.replace(garble[0], garble[1], 1))
    with pytest.raises(ParseError) as info:
        import_report(path, tool)
    assert "output" in str(info.value) or "JSON" in str(info.value)


def test_cut_inside_final_number_is_refused(tmp_path):
    text = fx("tflite_benchmark_apk_logcat_lines.txt").rstrip("\n")
    path = tmp_path / "cut.txt"
    path.write_text(text[:-3])  # "... Inference (avg): 14575" of 14575.2
    with pytest.raises(ParseError, match="may be cut"):
        import_report(path, "benchmark_model")


# --------------------------------------------------------------------------------------------- MLPerf, AI Hub


def test_mlperf_summary_and_detail():
    s = mlperf.parse_summary(fx("mlperf_loadgen_summary_singlestream_invalid.txt"))
    assert s.fields["SUT name"] == "PySUT" and s.fields["Scenario"] == "SingleStream"
    assert s.fields["Result is"] == "INVALID" and s.fields["Early stopping satisfied"] == "NO"
    assert s.latency_ns == {"p90": 700060891, "min": 597931992, "max": 700060891, "mean": 635649808,
                            "p50": 632335750, "p95": 700060891, "p97": 700060891, "p99": 700060891,
                            "p99.9": 700060891}
    assert s.qps == {"QPS w/ loadgen overhead": 1.57, "QPS w/o loadgen overhead": 1.57}
    assert s.test_parameters["min_query_count"] == "10" and s.test_parameters["performance_sample_count"] == "10833"
    assert s.test_parameters["qsl_rng_seed"] == "13281865557512327830" and len(s.test_parameters) == 19
    assert s.notes == ["Only processed 10 queries.", "Need to process at least 64 queries for early stopping."]
    rec = mlperf.to_record(s, component="unet")
    assert (rec.median_ms, rec.p90_ms, rec.mean_ms, rec.min_ms, rec.max_ms) == (
        632.33575, 700.060891, 635.649808, 597.931992, 700.060891)
    d = mlperf.parse_detail(fx("mlperf_mobile_mlperf_log_detail_lines.txt"))
    assert d["result_mean_latency_ns"] == 31329862 and d["result_query_count"] == 8
    assert d["result_validity"] == "INVALID" and d["result_min_queries_met"] is False
    rec = mlperf.to_record(d, component="unet")
    assert (rec.median_ms, rec.mean_ms, rec.p90_ms, rec.max_ms, rec.runs) == (None, 31.329862, 41.0139, 41.0139, 8)


def test_qaihm_summaries_and_profile_dict():
    a, b = qaihm.parse_job_summaries(fx("qaihm_profile_job_summary_text.txt"))
    assert (a.model, a.device, a.estimated_inference_ms, a.peak_memory_range_mb) == (
        "DETR-ResNet50", "QCS8550 (Proxy) (12)", 38.87, (1.36, 8.07))
    assert a.compute_units == {"NPU": 842, "GPU": 2} and a.total_ops == 844
    assert (b.model, b.estimated_inference_ms, b.compute_units, b.total_ops) == (
        "Yolo-v7", 20.86, {"NPU": 292, "CPU": 21}, 313)
    c, d = qaihm.parse_job_summaries(fx("qaihm_profile_job_summary_more.txt"))
    assert (c.device, c.estimated_inference_ms, c.peak_memory_range_mb, c.compute_units) == (
        "SA8255 (Proxy) (13)", 5.32, (0.77, 7.67), {"NPU": 100})
    assert d.compute_units == {"GPU": 145, "CPU": 70} and d.total_ops == 215 and d.peak_memory_range_mb == (38.27, 87.46)
    p = qaihm.parse_profile_dict(fx("qai_hub_0.56_download_profile_dict.py.txt"))
    s = p["execution_summary"]
    assert (s["estimated_inference_time"], s["estimated_inference_peak_memory"], s["first_load_time"]) == (
        3652, 166711296, 1374293)
    assert s["all_inference_times"] == [10003, 4205] and s["first_load_memory_peak_range"] == (98230272, 108003248)
    assert p["execution_detail"][1]["execution_cycles"] == 180315
    with pytest.raises(ParseError, match="complete Python literal"):
        qaihm.parse_profile_dict(fx("qai_hub_0.56_download_profile_dict.py.txt")[:-30])
