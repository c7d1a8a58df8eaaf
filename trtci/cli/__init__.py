"""The `trtci` command. It parses flags and calls the library; trtci.cli.exits turns every command's errors into
one line and an exit code.

Exit codes: 0 ok, 1 gate failed, 2 usage or input error, 3 environment (backend, GPU or package missing),
4 internal error, 5 publishing failed, 130 stopped with Ctrl-C. See the README's "Exit codes".
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import get_args

import click

from trtci import __version__
from trtci.cli.exits import TrtciGroup, exit_code_for
from trtci.cli.explain import register as register_explain_commands
from trtci.cli.github import register as register_github_commands
from trtci.cli.history import register as register_history_commands
from trtci.cli.interop import register as register_interop_commands
from trtci.cli.stats import register as register_stats_commands
from trtci.config import MAX_DIM, CalibrationChoice
from trtci.errors import ConfigError
from trtci.verdict.gate import FAIL_ON


def _csv(kind: type, example: str) -> Callable[[click.Context, click.Parameter, str | None], list | None]:
    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> list | None:
        if value is None:
            return None
        try:
            parts = [kind(part.strip()) for part in value.split(",") if part.strip()]
        except ValueError:
            parts = []
        if not parts:  # an empty list would silently mean the default
            raise click.BadParameter(f"expected a comma-separated list like {example}, got {value!r}")
        return parts

    return parse


class _Progress:
    """Progress bars on a terminal; one line per finished step in CI logs, where bars would be noise."""

    def __init__(self, console) -> None:
        self.console = console

    @contextlib.contextmanager
    def task(self, description: str) -> Iterator[Callable[[float], None]]:
        start = time.perf_counter()
        if self.console.is_terminal:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
            with Progress(*columns, console=self.console, transient=True) as bar:
                task = bar.add_task(description, total=1.0)
                yield lambda fraction: bar.update(task, completed=fraction)
        else:
            yield lambda fraction: None
        self.console.print(f"[green]✓[/] {description} [dim]({time.perf_counter() - start:.1f} s)[/]", highlight=False)


@click.group(cls=TrtciGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trtci")
@click.option("--debug", is_flag=True, help="Show tracebacks for expected errors too.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Track TensorRT and ONNX Runtime inference: prepare models, validate INT8/FP16 accuracy against FP32,
    benchmark, compare with the base branch and gate pull requests."""
    ctx.obj = {"debug": debug}


@cli.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="trtci.yml to run.")
@click.option("--model", type=click.Path(path_type=Path), help="One ONNX model to run without a config.")
@click.option("--precision", callback=_csv(str, "fp32,fp16"), help="Comma-separated precisions: fp32,fp16,int8.")
@click.option("--batch-size", callback=_csv(int, "1,8"), help="Comma-separated batch sizes, e.g. 1,8.")
@click.option("--calibration-data", help="INT8 calibration data: .npz, a folder of .npy, or module:function.")
@click.option(
    "--calibration-method",
    type=click.Choice(get_args(CalibrationChoice)),
    help="INT8 calibration: minmax, entropy, percentile, distribution, or auto (the best that passes).",
)
@click.option("--validation-data", help="Validation data (.npz with optional 'labels'), against FP32.")
@click.option("--label-output", help="Output holding class scores, for labels (default: the first [N, C] one).")
@click.option(
    "--backend",
    callback=_csv(str, "onnxruntime,tensorrt"),
    help="Comma-separated backends: onnxruntime, tensorrt, tensorrt-rtx, or auto (TensorRT where it runs).",
)
@click.option("--db", type=click.Path(path_type=Path), help="SQLite results database.")
@click.option("--report", type=click.Path(path_type=Path), help="Markdown report to write.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="JSON summary to write.")
@click.option(
    "--bundle-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Also write this run as a uniquely named run file here (matrix legs, history).",
)
@click.option("--template-dir", type=click.Path(path_type=Path, file_okay=False), help="Templates that override ours.")
@click.option("--cache-dir", type=click.Path(path_type=Path, file_okay=False), help="Prepared-model and engine cache.")
@click.option("--threshold", type=float, help="Relative latency change that counts as a regression (0.1 = 10%).")
@click.option("--duration", type=float, help="Seconds to benchmark each series (default 3, as trtexec).")
@click.option("--warmup", type=float, help="Warm-up milliseconds before timing (default 200).")
@click.option("--fail-on", type=click.Choice(FAIL_ON), default="both", show_default=True, help="What fails the gate.")
@click.option("--branch", help="Branch of this run (default: from GitHub Actions or git).")
@click.option("--base-branch", help="Branch whose history is the baseline (default: the PR's base, or --branch).")
@click.option("--commit", help="Commit of this run (default: from GitHub Actions or git).")
@click.option("--pr", "pr_number", type=click.IntRange(1, MAX_DIM), help="Pull request number.")
@click.option(
    "--device",
    type=click.IntRange(0, 1023),
    help="CUDA device index for TensorRT backends (default: the first visible).",
)
@click.option("--dashboard-url", help="Link to the published dashboard (trtci dashboard), shown beside regressions.")
@click.pass_context
def run(ctx: click.Context, **options) -> None:
    """Prepare, validate, benchmark, compare and record; write the report. Exit 1 when the gate fails."""
    from trtci.cli.console import make_console
    from trtci.cli.finish import check_runner_files, finish
    from trtci.context.run import run_context
    from trtci.pipeline import run as pipeline
    from trtci.report.dashboard import trend_extra
    from trtci.store.database import Store
    from trtci.store.runfile import write_runfile
    from trtci.verdict.gate import judge

    for param in ctx.command.params:
        _refuse_non_utf8(param.opts[0], options[param.name])
    config = _config_from_options(options)
    console = make_console(stderr=True)
    context = run_context(
        overrides={
            "commit": options["commit"],
            "branch": options["branch"],
            "base_branch": options["base_branch"],
            "pr_number": options["pr_number"],
        }
    )
    for name, value in vars(context).items():
        _refuse_non_utf8(f"{name} (from the environment or git)", value)
    # Before any work: a place results cannot be written to fails in a second, not after the run.
    check_runner_files()
    if options["bundle_dir"] is not None:
        _make_dir(options["bundle_dir"], "--bundle-dir")
    base_config = _merge_base_config(options, context.merge_base, console)
    result = pipeline.run(config, context, _Progress(console), base_config=base_config)
    extra: dict = {}
    if result.regressions or result.warned:  # each regression's trend in the comment needs the base's history
        with Store(config.database) as store:
            extra = trend_extra(store, result, dashboard_url=options["dashboard_url"])
    if options["bundle_dir"] is not None:
        try:
            console.print(f"run file {write_runfile(result, options['bundle_dir'])}", highlight=False)
        except OSError as e:
            raise ConfigError(f"{options['bundle_dir']}: cannot write the run file ({e.strerror or e})") from e
    code = finish(
        result,
        judge(result, options["fail_on"]),
        report=config.report,
        json_path=config.summary_json,
        template_dir=config.template_dir,
        extra=extra,
        where=[f"results in {config.database}", *([f"report {config.report}"] if config.report else [])],
    )
    ctx.exit(code)


@cli.command()
def doctor() -> None:
    """Show what this machine offers (GPUs, driver, CUDA, TensorRT, ONNX Runtime, NVML) and what each backend
    can do here: build, run, or why not, with the install hint."""
    from trtci.backends.doctor import diagnose, print_doctor
    from trtci.cli.console import make_console

    print_doctor(diagnose(), make_console())


@cli.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path), required=True, help="trtci.yml to check.")
def config(config_path: Path) -> None:
    """Check a trtci.yml and print it with every default filled in."""
    import yaml

    from trtci.config import load_config

    loaded = load_config(config_path)
    click.echo(yaml.safe_dump(loaded.model_dump(mode="json"), sort_keys=False), nl=False)


register_github_commands(cli)
register_history_commands(cli)
register_stats_commands(cli)
register_interop_commands(cli)
register_explain_commands(cli)


def _config_from_options(options: dict):
    """A Config from --config, or from --model flags; command-line values override the file's."""
    from trtci.config import load_config, parse_config

    one_model_flags = ("model", "precision", "batch_size", "calibration_data", "validation_data", "label_output")
    if options["config_path"] is not None:
        given = [f"--{name.replace('_', '-')}" for name in one_model_flags if options[name] is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} describe one model; put it in the config or drop --config")
        config = load_config(options["config_path"])
    elif options["model"] is not None:
        model: dict = {"path": str(options["model"])}
        if options["label_output"] and not options["validation_data"]:
            raise ConfigError("--label-output names the class-score output for --validation-data labels: add it")
        if options["calibration_method"] and not options["calibration_data"]:
            raise ConfigError("--calibration-method needs --calibration-data (INT8 calibration samples)")
        # Without calibration data INT8 cannot be built: the defaults are then the precisions that can.
        model["precisions"] = options["precision"] or (
            ["fp32", "fp16", "int8"] if options["calibration_data"] else ["fp32", "fp16"]
        )
        if options["batch_size"]:
            model["batch_sizes"] = options["batch_size"]
        if options["calibration_data"]:
            model["calibration"] = {"data": options["calibration_data"]}
        if options["validation_data"]:
            model["validation"] = {"data": options["validation_data"], "label_output": options["label_output"]}
        data: dict = {"models": [model], "summary_json": None}
        config = parse_config(data, "command line", Path.cwd())
    else:
        raise ConfigError("give --config trtci.yml, or --model model.onnx (see trtci run --help)")
    return _apply_overrides(config, options)


def _refuse_non_utf8(where: str, value: object) -> None:
    """ConfigError unless every text in `value` is UTF-8: runs, reports and the database hold it as text, and a
    shell passes other bytes on as halves of UTF-16 pairs that no file or database can hold."""
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, (str, Path)):
            try:
                str(item).encode("utf-8")
            except UnicodeEncodeError:
                raise ConfigError(f"{where} {str(item)!r}: not UTF-8 text; rename it or pass UTF-8") from None


def _make_dir(path: Path, flag: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{flag} {path}: cannot create the directory ({e.strerror or e}); choose another") from e


def _merge_base_config(options: dict, merge_base: str | None, console):
    """trtci.yml as the PR's merge-base had it, with the same command-line overrides, or None where unknown."""
    from trtci.context.git import config_at

    if options["config_path"] is None or merge_base is None:
        return None
    try:
        base = config_at(options["config_path"], merge_base)
        return _apply_overrides(base, options) if base is not None else None
    except ConfigError as e:
        console.print(f"[yellow]warning[/]: {e}: build settings are not A/B tested against the merge-base")
        return None


def _apply_overrides(config, options: dict):
    from trtci.config import parse_config

    data = config.model_dump(mode="json")
    for flag, key in (("db", "database"), ("report", "report"), ("json_path", "summary_json")):
        if options[flag] is not None:
            data[key] = str(options[flag])
    for flag, key in (("template_dir", "template_dir"), ("cache_dir", "cache_dir")):
        if options[flag] is not None:
            data[key] = str(options[flag])
    if options["backend"]:
        data["backends"] = options["backend"]
    if options["threshold"] is not None:
        data["compare"]["threshold"] = options["threshold"]
    if options["duration"] is not None:
        data["bench"]["duration_s"] = options["duration"]
    if options["warmup"] is not None:
        data["bench"]["warmup_ms"] = options["warmup"]
    if options["device"] is not None:
        data["tensorrt"]["device"] = options["device"]
    if options["calibration_method"]:
        calibrated = [model for model in data["models"] if model.get("calibration")]
        if not calibrated:
            raise ConfigError("--calibration-method: no model in the config has calibration data to apply it to")
        for model in calibrated:
            model["calibration"]["method"] = options["calibration_method"]
    return parse_config(data, "command line", Path.cwd(), options["config_path"])


def main() -> None:
    """Entry point: run the CLI and exit with its code. A command's errors are already said and translated by
    its class (trtci.cli.exits); what fails before any command runs is translated here the same way."""
    try:
        code = cli.main(standalone_mode=False, prog_name="trtci")
    except (Exception, KeyboardInterrupt) as error:
        code = exit_code_for(error, debug="--debug" in sys.argv[1:])
    sys.exit(code or 0)
