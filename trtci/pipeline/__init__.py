"""The stages of one run, in data-flow order, and the commands built from them.

plan.py        check the config against the model and data: shapes, profiles, what each series is (identity)
data.py        calibration and validation sets (.npz, .npy folders, module:function), checked against the model
model.py       inspect an ONNX file: hash, opset, inputs and outputs
prepare.py     FP16 conversion and INT8 Q/DQ calibration per backend scheme (cached by content hash)
cache.py       the prepared-model cache on disk: entries, working folders, and those interrupted runs left
fp16.py        FP16 by type propagation, sensitive ops kept in FP32 (fp16_rules.py: which nodes and why)
int8_variant.py  a plan's INT8 model per scheme: method (calibration_choice.py: `auto`), nodes kept in float
variants.py    the prepared models (precision x quantization scheme) each backend runs
validate.py    FP32 reference outputs on ONNX Runtime and each variant's accuracy against them
root_cause.py  why INT8 fails accuracy, by ONNX node, and the nodes to keep in float (int8_sensitivity.py ranks
               the quantized tensors, int8_units.py isolates them, int8_eval.py runs the candidates)
explain.py     root cause during a run (for a failing INT8 variant) and for `trtci explain int8`
run.py         the orchestrator: plan -> prepare -> load/build -> validate -> measure -> compare -> store
confirm.py     re-measure suspected regressions before a verdict stands
merge_base.py  interleaved A/B against the merge-base's build when a PR changed the model or build settings
ab.py          `trtci ab`: two ONNX files timed against each other
fanin.py       `trtci merge`: the run files of GPU matrix legs into one run per leg, a report and a grid
ingest.py      `trtci ingest pytest-benchmark`: outside results recorded as series (other importers go here)
ingest_trtexec.py, trtexec_files.py  `trtci ingest trtexec`: trtexec's exports read, checked and recorded
ingest_perf_analyzer.py  `trtci ingest perf-analyzer`: Triton perf_analyzer's CSV, a series per concurrency
diff_layers.py  per-layer diffs of engines from files (`trtci diff layers`)
export_triton.py  `trtci export triton`: a Triton model repository from runs
pytest_plugin.py  the `trtci_benchmark` fixture
progress.py    the Progress protocol the CLI fills with progress bars

The pipeline may import verdict, report, store, backends, context, config, results and errors; never github or
cli. Only prepare.py (its quantizer) and int8_eval.py (the throwaway INT8 candidates the root cause and the
calibration choice score) import ONNX Runtime itself; everything else runs models through backends.
"""
