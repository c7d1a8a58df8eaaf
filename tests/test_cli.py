"""The trtci command as users run it: flags, exit codes, one-line errors, files written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from tests.cli_runner import trtci
from tests.models import mlp_classifier
from trtci.cli import cli
from trtci.cli.exits import MAX_LINE, TrtciCommand, TrtciGroup
from trtci.errors import BackendUnavailable, ConfigError, PublishError

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--duration", "0.02", "--warmup", "0"]




@pytest.fixture
def model_dir(tmp_path, monkeypatch):
    mlp_classifier(tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "c.npz", input=rng.standard_normal((16, 16)).astype(np.float32))
    np.savez(tmp_path / "v.npz", input=rng.standard_normal((20, 16)).astype(np.float32))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    return tmp_path


def test_one_model_run_with_the_documented_flags_writes_db_report_and_json(model_dir, monkeypatch, capsys):
    code, out, err = trtci(
        monkeypatch, capsys, "run", "--model", "m.onnx", "--precision", "fp32,fp16,int8", "--batch-size", "1,8",
        "--calibration-data", "c.npz", "--validation-data", "v.npz", "--backend", "onnxruntime",
        "--db", "results.db", "--report", "report.md", "--json", "summary.json", *FAST,
    )  # fmt: skip
    summary = json.loads((model_dir / "summary.json").read_text())
    results = summary["results"]
    # fp32, fp16 and int8 x 2 batch sizes, plus the TensorRT Q/DQ int8, validated once (not benchmarked on the CPU)
    assert len(results) == 7
    first = results[0]
    for key in ("model", "precision", "batch", "backend", "device", "latency_ms", "throughput", "cv", "accuracy",
                "verdict"):  # fmt: skip
        assert key in first
    assert set(first["latency_ms"]) >= {"min", "mean", "median", "p90", "p95", "p99", "max"}
    assert {r["batch"] for r in results} == {1, 8}
    assert (model_dir / "report.md").read_text().startswith("<!-- trtci:report -->")
    assert (model_dir / "results.db").stat().st_size > 0
    assert code in (0, 1)  # random weights: the gate may pass or fail, but the run must complete
    assert "fp32" in out and "gate" in err


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give --config trtci.yml, or --model model.onnx"),
        (["--model", "missing.onnx", "--precision", "fp32"], "missing.onnx"),
        (["--model", "m.onnx", "--precision", "fp64"], "models.0.precisions.0"),
        (["--model", "m.onnx", "--precision", "int8"], "int8 needs calibration data"),
        (["--model", "m.onnx", "--precision", "fp32", "--validation-data", "nope.npz"], "nope.npz: no such file"),
        (["--model", "m.onnx", "--batch-size", "one"], "expected a comma-separated list"),
        (["--model", "m.onnx", "--precision", "fp32", "--backend", "onnxruntim"], "backends.0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(model_dir, monkeypatch, capsys, args, message):
    code, out, err = trtci(monkeypatch, capsys, "run", *args, *FAST)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not (model_dir / "trtci.db").exists()


def test_corrupt_model_is_exit_2_and_keeps_the_database(model_dir, monkeypatch, capsys):
    args = ["run", "--model", "m.onnx", "--precision", "fp32", "--db", "r.db", *FAST]
    assert trtci(monkeypatch, capsys, *args)[0] in (0, 1)
    before = (model_dir / "r.db").read_bytes()
    (model_dir / "bad.onnx").write_bytes(b"\x08\x07garbage")
    code, _, err = trtci(monkeypatch, capsys, "run", "--model", "bad.onnx", "--precision", "fp32", "--db", "r.db")
    assert code == 2 and "bad.onnx" in err and "Traceback" not in err
    assert (model_dir / "r.db").read_bytes() == before


def test_unwritable_database_is_exit_2(model_dir, monkeypatch, capsys):
    (model_dir / "file").write_text("not a directory")
    code, _, err = trtci(monkeypatch, capsys, "run", "--model", "m.onnx", "--precision", "fp32", "--db", "file/r.db")
    assert code == 2 and "file/r.db" in err


def test_config_command_prints_defaults_and_rejects_typos(model_dir, monkeypatch, capsys):
    (model_dir / "trtci.yml").write_text("models:\n  - path: m.onnx\n    precisions: [fp32]\n")
    code, out, _ = trtci(monkeypatch, capsys, "config", "--config", "trtci.yml")
    assert code == 0 and "duration_s: 3.0" in out
    (model_dir / "trtci.yml").write_text("models:\n  - path: m.onnx\n    precisions: [fp32]\nbenchmark: {}\n")
    code, _, err = trtci(monkeypatch, capsys, "config", "--config", "trtci.yml")
    assert code == 2 and "benchmark: unknown key" in err


def test_every_command_has_help_and_version(monkeypatch, capsys):
    code, out, _ = trtci(monkeypatch, capsys, "--version")
    assert code == 0 and "trtci, version" in out
    for name, command in cli.commands.items():
        code, out, _ = trtci(monkeypatch, capsys, name, "--help")
        assert code == 0 and "Usage:" in out, name
        assert command.help, f"trtci {name} has no help text"


def test_imports_and_help_work_without_gpu_packages(tmp_path):
    """Every module imports, and `trtci --help` runs, when tensorrt, CUDA and NVML are absent."""
    script = (
        "import sys\n"
        "for name in ('tensorrt', 'tensorrt_rtx_bindings', 'tensorrt_bindings', 'cuda', 'pynvml', 'torch'):\n"
        "    sys.modules[name] = None  # makes `import name` raise ImportError\n"
        "import pkgutil, importlib, trtci\n"
        "names = [m.name for m in pkgutil.walk_packages(trtci.__path__, 'trtci.')\n"
        "         if not m.name.endswith('.__main__')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names))\n"
        "sys.argv = ['trtci', '--help']\n"
        "from trtci.cli import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    count, _, help_text = done.stdout.partition("\n")
    assert int(count) >= 10
    assert "Usage: trtci" in help_text


def test_a_bare_model_runs_the_precisions_it_can_without_calibration_data(model_dir, monkeypatch, capsys):
    code, _, _ = trtci(monkeypatch, capsys, "run", "--model", "m.onnx", "--json", "s.json", *FAST)
    precisions = [r["precision"] for r in json.loads((model_dir / "s.json").read_text())["results"]]
    assert code == 0 and precisions == ["fp32", "fp16"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--label-output", "logits"], "--label-output names the class-score output for --validation-data"),
        (["--calibration-method", "entropy"], "--calibration-method needs --calibration-data"),
        (["--calibration-method", "auto"], "--calibration-method needs --calibration-data"),
    ],
)
def test_flags_that_would_be_ignored_are_refused(model_dir, monkeypatch, capsys, args, message):
    code, _, err = trtci(monkeypatch, capsys, "run", "--model", "m.onnx", *args, *FAST)
    assert code == 2 and message in err


def test_run_writes_the_long_report_to_the_job_summary(model_dir, monkeypatch, capsys):
    summary = model_dir / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, _, _ = trtci(monkeypatch, capsys, "run", "--model", "m.onnx", "--precision", "fp32", *FAST)
    text = summary.read_text()
    assert code == 0
    assert "<summary>Latency statistics</summary>" in text  # summary.md.j2, not the shorter comment
    assert "| m fp32 b1 onnxruntime |" in text


def test_bundle_dir_gets_a_run_file_that_reads_back(model_dir, monkeypatch, capsys):
    from trtci.store.runfile import read_runfile

    code, _, _ = trtci(
        monkeypatch, capsys, "run", "--model", "m.onnx", "--precision", "fp32", "--bundle-dir", "legs", *FAST
    )
    (path,) = (model_dir / "legs").iterdir()
    run = read_runfile(path)
    assert code == 0 and [s.key.precision for s in run.series] == ["fp32"]
    assert run.series[0].bench.stats.iterations == len(run.series[0].bench.samples_ms)


def test_run_writes_step_outputs_for_the_action(model_dir, monkeypatch, capsys):
    outputs = model_dir / "github_output"
    outputs.write_text("")
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    code, _, _ = trtci(monkeypatch, capsys, "run", "--model", "m.onnx", "--precision", "fp32", *FAST)
    lines = outputs.read_text().splitlines()
    assert "regressions=0" in lines and "accuracy-failures=0" in lines and "accuracy-regressions=0" in lines
    assert code == 0


def test_run_in_a_pr_branch_times_changed_build_settings_against_the_merge_base_config(tmp_path, monkeypatch, capsys):
    from tests.git_repos import settings_repo

    root = tmp_path / "repo"
    settings_repo(root, length=256)
    subprocess.run(["git", "-C", str(root), "checkout", "-q", "-b", "feature"], check=True)
    config = root / "trtci.yml"
    config.write_text(config.read_text().replace("[1, 256]", "[1, 262144]") + "summary_json: s.json\n")
    monkeypatch.chdir(root)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    code, _, err = trtci(monkeypatch, capsys, "run", "--config", "trtci.yml", "--base-branch", "main")
    (comparison,) = json.loads((root / "s.json").read_text())["comparisons"]
    assert comparison["method"] == "ab-merge-base", err
    assert comparison["verdict"] == "regression" and "build settings changed" in comparison["reason"]
    assert code == 1


def test_a_merge_base_config_that_does_not_parse_is_a_warning_not_a_failure(tmp_path, monkeypatch, capsys):
    from tests.git_repos import commit_all, settings_repo

    root = tmp_path / "repo"
    settings_repo(root, length=256)
    config = root / "trtci.yml"
    good = config.read_text()
    config.write_text(good.replace("compare:", "comparre:"))
    commit_all(root, "a typo on main")
    subprocess.run(["git", "-C", str(root), "checkout", "-q", "-b", "feature"], check=True)
    config.write_text(good)
    monkeypatch.chdir(root)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    code, _, err = trtci(monkeypatch, capsys, "run", "--config", "trtci.yml", "--base-branch", "main")
    assert code == 0
    assert "warning" in err and "build settings are not A/B tested" in err and "comparre" in err


def test_an_override_the_merge_base_config_cannot_take_is_a_warning(tmp_path):
    from rich.console import Console

    from tests.git_repos import settings_repo
    from trtci.cli import _merge_base_config

    merge_base, path = settings_repo(tmp_path / "repo", length=256)  # no model with calibration data there
    keys = ("db", "report", "json_path", "template_dir", "cache_dir", "backend", "threshold", "duration", "warmup")
    options = {**dict.fromkeys(keys), "device": None, "config_path": path, "calibration_method": "entropy"}
    console = Console(record=True, width=300)
    assert _merge_base_config(options, merge_base, console) is None
    text = console.export_text()
    assert "--calibration-method" in text and "not A/B tested" in text
    assert _merge_base_config({**options, "calibration_method": None}, merge_base, console).bench.warmup_ms == 0


def _commands(group: click.Group, path: str = "trtci"):
    for name, command in group.commands.items():
        yield f"{path} {name}", command
        if isinstance(command, click.Group):
            yield from _commands(command, f"{path} {name}")


def test_every_command_ends_its_errors_through_the_one_translator():
    for name, command in _commands(cli):
        assert isinstance(command, (TrtciCommand, TrtciGroup)), f"{name} does not translate its errors"


@pytest.mark.parametrize(
    "args",
    [
        ["run"],
        ["config", "--config", "missing.yml"],
        ["comment", "--report", "missing.md"],
        ["merge", "missing-folder"],
        ["status", "--json", "missing.json"],
        ["baseline", "fetch", "--branch", "main", "--out", "b"],
        ["ingest", "pytest-benchmark", "missing.json"],
        ["ab", "--model-a", "a.onnx", "--model-b", "b.onnx"],
        ["db", "runs", "--db", "missing.db"],
        ["history", "pull", "--repo-dir", "."],
        ["dashboard", "--db", "missing.db"],
    ],
    ids=" ".join,
)
def test_every_command_says_bad_input_in_one_line_with_exit_2(tmp_path, monkeypatch, capsys, args):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)
    code, out, err = trtci(monkeypatch, capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith("trtci: error: ") and err.count("\n") == 1, err
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    code, out, err = trtci(monkeypatch, capsys, *args)
    assert code == 2 and out.startswith("::error title=trtci::") and out.count("\n") == 1 and err == ""


def _raising(error: BaseException) -> click.Command:
    def fail() -> None:
        raise error

    return TrtciCommand("fail", callback=fail)


ERRORS = [
    (ConfigError("fix the config"), 2, "trtci: error: fix the config"),
    (BackendUnavailable("install tensorrt"), 3, "trtci: error: install tensorrt"),
    (PublishError("GitHub 502"), 5, "trtci: error: GitHub 502"),
    (click.BadParameter("not a number"), 2, "Error: Invalid value: not a number"),
    (KeyboardInterrupt(), 130, "trtci: aborted"),
    (RuntimeError("a bug"), 4, "trtci: internal error (a bug in trtci)"),
]


@pytest.mark.parametrize("error, code, line", ERRORS, ids=[type(e).__name__ for e, _, _ in ERRORS])
def test_an_error_maps_to_one_line_and_code_alone_in_a_group_and_under_trtci(monkeypatch, capsys, error, code, line):
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    alone = CliRunner().invoke(_raising(error), [])
    group = TrtciGroup("outer", commands={"inner": TrtciGroup("inner", commands={"fail": _raising(error)})})
    nested = CliRunner().invoke(group, ["inner", "fail"])
    assert (alone.exit_code, nested.exit_code) == (code, code)
    assert line in alone.output and line in nested.output
    assert ("Traceback" in alone.output) == (code == 4)
    monkeypatch.setitem(cli.commands, "fail", _raising(error))
    exit_code, _, err = trtci(monkeypatch, capsys, "fail")
    assert exit_code == code and line in err and ("Traceback" in err) == (code == 4)


def test_debug_adds_the_traceback_to_an_expected_error(monkeypatch, capsys):
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.setitem(cli.commands, "fail", _raising(ConfigError("fix the config")))
    assert "Traceback" not in trtci(monkeypatch, capsys, "fail")[2]
    code, _, err = trtci(monkeypatch, capsys, "--debug", "fail")
    assert code == 2 and "Traceback" in err and err.rstrip().endswith("trtci: error: fix the config")


def _file_size_limit(limit: int):
    """For subprocess's preexec_fn: writes past `limit` bytes fail with EFBIG, as on a full disk."""
    import resource
    import signal

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_report_that_does_not_fit_on_the_disk_leaves_the_previous_report_whole(model_dir):
    args = [sys.executable, "-m", "trtci.cli", "run", "--model", "m.onnx", "--precision", "fp32", *FAST]
    args += ["--db", "r.db", "--report", "r.md"]
    first = subprocess.run(args, cwd=model_dir, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    previous = (model_dir / "r.md").read_bytes()
    (model_dir / "t").mkdir()  # a report of 3 MB, past the 1 MB the next run may write to any one file
    (model_dir / "t" / "comment.md.j2").write_text("{% for i in range(30000) %}" + "x" * 100 + "\n{% endfor %}")
    full = subprocess.run(
        [*args, "--template-dir", "t"],
        cwd=model_dir,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_file_size_limit(1 << 20),
    )
    assert full.returncode == 2, full.stderr
    assert "r.md: cannot write the report" in full.stderr and "Traceback" not in full.stderr
    assert (model_dir / "r.md").read_bytes() == previous
    assert sorted(p.name for p in model_dir.iterdir() if p.name.startswith(".r.md")) == []


def test_a_runaway_error_is_cut_to_one_line_keeping_its_start_and_end(monkeypatch, capsys):
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    message = "m.onnx: " + "a very long library message\n" * 400 + "; do this to fix it"
    monkeypatch.setitem(cli.commands, "fail", _raising(ConfigError(message)))
    code, _, err = trtci(monkeypatch, capsys, "fail")
    assert code == 2 and err.count("\n") == 1 and len(err) <= MAX_LINE + 1
    assert err.startswith("trtci: error: m.onnx: a very long") and err.rstrip().endswith("; do this to fix it")
    assert "trtci --debug shows it whole" in err
    code, _, err = trtci(monkeypatch, capsys, "--debug", "fail")
    assert code == 2 and err.rstrip().endswith(f"trtci: error: {' '.join(message.splitlines())}")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    code, out, _ = trtci(monkeypatch, capsys, "fail")
    assert out.startswith("::error title=trtci::") and out.count("\n") == 1 and len(out) <= MAX_LINE + 1


@pytest.mark.parametrize(
    "args, says",
    [
        (["--pr", "-5"], "Invalid value for '--pr'"),
        (["--pr", "9" * 24], "Invalid value for '--pr'"),
        (["--device", "-1"], "Invalid value for '--device'"),
        (["--batch-size", ","], "expected a comma-separated list like 1,8, got ','"),
        (["--precision", ","], "expected a comma-separated list like fp32,fp16, got ','"),
        (["--backend", ","], "--backend"),
        (["--no-such-flag"], "No such option '--no-such-flag'"),
    ],
)
def test_a_flag_out_of_range_or_empty_is_one_line_before_any_work(model_dir, monkeypatch, capsys, args, says):
    code, out, err = trtci(monkeypatch, capsys, "run", "--model", "m.onnx", *args, *FAST)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith("Error: ") and says in err and "'trtci run -h' lists the options" in err
    assert not (model_dir / "trtci.db").exists()


@pytest.mark.parametrize("variable", ["GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"])
def test_a_runner_file_that_is_a_folder_is_refused_before_any_work(model_dir, monkeypatch, capsys, variable):
    monkeypatch.setenv(variable, str(model_dir))
    code, _, err = trtci(monkeypatch, capsys, "run", "--model", "m.onnx", "--precision", "fp32", *FAST)
    assert code == 2 and f"{variable}={model_dir} is not a file trtci can append to" in err
    assert not (model_dir / "trtci.db").exists()


def test_a_bundle_dir_that_cannot_be_made_is_refused_before_any_work(model_dir, monkeypatch, capsys):
    (model_dir / "file").write_text("")
    args = ["run", "--model", "m.onnx", "--precision", "fp32", "--bundle-dir", "file/runs", *FAST]
    code, _, err = trtci(monkeypatch, capsys, *args)
    assert code == 2 and "--bundle-dir file/runs: cannot create the directory" in err
    assert not (model_dir / "trtci.db").exists()


def test_the_readme_documents_every_exit_code_trtci_has():
    from trtci import errors
    from trtci.cli import exits

    table = (ROOT / "README.md").read_text().split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(row.split("|")[1]) for row in table.splitlines() if row.startswith("| ") and row[2].isdigit()}
    codes = {value for name, value in vars(errors).items() if name.startswith("EXIT_")} | {exits.EXIT_ABORTED}
    assert documented == codes == {0, 1, 2, 3, 4, 5, 130}
