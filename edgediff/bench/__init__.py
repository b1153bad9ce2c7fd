"""The benchmark suite: `python -m edgediff.bench --suite default|sd15|sd21|bksdm|all`.

Converts each model's UNet with every converter that installs here (edgediff's backends and the anchors: Hugging
Face Optimum's ONNX export, litert-torch's default conversion), times each artifact interleaved with PyTorch eager
in the same process, and writes BENCHMARKS.md, one JSON per row and plots. Rows are resumable: each one's JSON is
written as soon as it completes, and a rerun skips finished rows unless --force.

Modules: machine (facts about this machine, GEMM peak, load sampling), rows (what a suite runs), convert_worker /
time_worker (the child processes), runner (locks, subprocesses, process-tree memory, resumption), anchors (earlier
figures and the Optimum environment), report (BENCHMARKS.md and plots), compare (the regression guard).
"""
