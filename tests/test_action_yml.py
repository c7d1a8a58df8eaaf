"""action.yml and the workflows: injection-safe by construction, valid by SchemaStore, clean by zizmor, and the
composite's steps run in order with bash as the runner would run them."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from github_server import github_fixture  # noqa: F401  (the `github` fixture)

ROOT = Path(__file__).resolve().parent.parent
ACTION = ROOT / "action.yml"
EXAMPLES = ROOT / "examples" / "workflows"
WORKFLOWS = sorted([*(ROOT / ".github" / "workflows").glob("*.yml"), *(ROOT / "examples" / "workflows").glob("*.yml")])
EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def action() -> dict:
    return load(ACTION)


def all_steps(doc: dict) -> list[dict]:
    if "runs" in doc:
        return doc["runs"]["steps"]
    return [step for job in doc["jobs"].values() for step in job.get("steps", [])]


@pytest.mark.parametrize("path", [ACTION, *WORKFLOWS], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_expression_inside_any_run_script(path):
    for step in all_steps(load(path)):
        if "run" in step:
            assert "${{" not in step["run"], f"{step.get('id') or step.get('name')}: use env:, not ${{{{ }}}}"
            assert step.get("shell"), f"{step.get('id') or step.get('name')} has no shell:"


@pytest.mark.parametrize("path", [ACTION, *WORKFLOWS], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_action_is_pinned_to_a_commit(path):
    for step in all_steps(load(path)):
        uses = step.get("uses")
        if uses and not uses.startswith("./"):
            assert PINNED.match(uses), f"{uses} is not pinned to a full commit SHA"


def test_every_input_reaches_scripts_only_through_env():
    doc = action()
    used = set()
    for step in doc["runs"]["steps"]:
        for value in (step.get("env") or {}).values():
            used.update(re.findall(r"inputs\.([\w-]+)", str(value)))
    assert used == set(doc["inputs"]), f"inputs never passed through env: {set(doc['inputs']) - used}"
    assert "github-token" in used and all(k in doc["inputs"] for k in ("config", "fail-on", "comment-mode"))


def test_outputs_map_to_step_outputs_that_exist():
    doc = action()
    steps = {s["id"]: s for s in doc["runs"]["steps"] if "id" in s}
    assert set(doc["outputs"]) == {"verdict", "regressions", "report", "database"}
    for name, output in doc["outputs"].items():
        m = re.fullmatch(r"\$\{\{ steps\.([\w-]+)\.outputs\.([\w-]+) \}\}", output["value"])
        assert m, f"output {name}: {output['value']}"
        assert m[1] in steps and m[2] == name
        if name != "regressions":  # written by `trtci run` itself
            assert f"{name}=" in steps[m[1]]["run"]


def test_workflows_have_top_level_least_privilege_permissions():
    for path in WORKFLOWS:
        doc = load(path)
        assert "permissions" in doc, f"{path.name} lacks top-level permissions"
        assert doc["permissions"] in ({}, {"contents": "read"}), f"{path.name}: {doc['permissions']}"


def test_matrix_example_fans_in_safely():
    doc = load(EXAMPLES / "gpu-matrix.yml")
    bench, report = doc["jobs"]["bench"], doc["jobs"]["report"]
    # A push to main uploads the baseline artifact: only pull-request runs may be cancelled by a newer one.
    assert doc["concurrency"]["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"
    assert bench["strategy"]["fail-fast"] is False
    assert "self-hosted" in bench["runs-on"]
    upload = next(s for s in bench["steps"] if "upload-artifact" in s.get("uses", ""))
    assert "matrix.gpu" in upload["with"]["name"]
    assert report["needs"] == "bench" and report["if"] == "${{ !cancelled() }}"


def tool(name: str) -> list[str]:
    """The command of a checker from the test extra; CI must install it, so its absence fails the test."""
    found = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    assert found, f"{name} is missing: pip install check-jsonschema zizmor (the project's test extra)"
    return [found]


def test_action_matches_schemastore():
    run = subprocess.run(
        [*tool("check-jsonschema"), "--builtin-schema", "vendor.github-actions", str(ACTION)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_workflows_match_schemastore():
    run = subprocess.run(
        [*tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("persona", ["regular", "auditor"])
def test_zizmor_finds_nothing(persona):
    """Every finding is fixed, or ignored inline with its reason and explained in docs/security.md."""
    run = subprocess.run(
        [*tool("zizmor"), "--offline", "--no-progress", f"--persona={persona}", str(ACTION), *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "No findings to report" in run.stdout + run.stderr
    security = (ROOT / "docs" / "security.md").read_text()
    for path in [ACTION, *WORKFLOWS]:
        for ignored in re.findall(r"zizmor: ignore\[([\w-]+)\]", path.read_text()):
            assert f"`{ignored}`" in security, f"{path.name} ignores {ignored}: explain it in docs/security.md"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_workflow_has_a_concurrency_group(path):
    assert "group" in load(path).get("concurrency", {}), f"{path.name}: add a concurrency group"


def test_readme_snippet_pins_a_commit_and_keeps_credentials_out_of_the_checkout():
    readme = (ROOT / "README.md").read_text()
    snippet = yaml.safe_load(readme.split("## In a workflow", 1)[1].split("```yaml", 1)[1].split("```", 1)[0])
    assert "group" in snippet["concurrency"]
    [job] = snippet["jobs"].values()
    checkout, trtci = job["steps"][0], job["steps"][1]
    assert checkout["with"]["persist-credentials"] is False
    for step in (checkout, trtci):
        assert PINNED.match(step["uses"]), f"{step['uses']} is not pinned to a full commit SHA"
    assert re.search(r"uses: \S+@[0-9a-f]{40} # v\d", readme), "say which release the pinned commit is"


# Running the composite's steps with bash, as the runner does: env from expressions, one GITHUB_OUTPUT per step.


def evaluate(value: str, context: dict) -> str:
    def one(match: re.Match) -> str:
        expr = match[1]
        if m := re.fullmatch(r"inputs\.([\w-]+)", expr):
            return context["inputs"].get(m[1], "")
        if m := re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expr):
            return context["steps"].get(m[1], {}).get(m[2], "")
        return {"runner.temp": context["temp"], "github.token": context["token"]}[expr]

    return EXPR.sub(one, str(value))


def read_outputs(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        name, _, value = line.partition("=")
        values[name] = value
    return values


def run_step(step_id: str, context: dict, base_env: dict[str, str], tmp: Path, cwd: Path | None = None) -> int:
    step = next(s for s in action()["runs"]["steps"] if s.get("id") == step_id)
    return run_bash(step, step_id, context, {**base_env, "GITHUB_ACTION_PATH": str(ROOT)}, tmp, cwd)


def run_bash(step: dict, step_id: str, context: dict, base_env: dict[str, str], tmp: Path, cwd: Path | None = None):
    """Run a `shell: bash` step as the runner does: its env evaluated, its own GITHUB_OUTPUT file."""
    assert step["shell"] == "bash"
    out = tmp / f"output-{step_id}"
    out.touch()
    env = {**base_env, "GITHUB_OUTPUT": str(out)}
    env.update({k: evaluate(v, context) for k, v in (step.get("env") or {}).items()})
    script = tmp / f"step-{step_id}.sh"
    script.write_text(step["run"])
    # How the runner starts `shell: bash` steps.
    proc = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        env=env,
        capture_output=True,
        text=True,
        cwd=cwd,
    )
    context["steps"][step_id] = read_outputs(out)
    context["log"] += proc.stdout + proc.stderr
    return proc.returncode


def executable(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


# `trtci run --db PATH` adds one run to the database (a stand-in table: only which file is written matters here).
RECORD_RUN = (
    "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); db.execute('create table if not exists runs (n)'); "
    "db.execute('insert into runs values (1)'); db.commit()"
)
# A real run file, as `trtci run --bundle-dir DIR` writes one: the pull request number from the event.
WRITE_RUN_FILE = (
    "import sys; from dataclasses import replace; from pathlib import Path; from tests.sample_runs import passing_run; "
    "from trtci.context.event import load_event; from trtci.store.runfile import write_runfile; run = passing_run(); "
    "run.context = replace(run.context, pr_number=load_event().pr_number); write_runfile(run, Path(sys.argv[1]))"
)


@pytest.fixture
def runner(tmp_path: Path, github):
    """A runner's view: temp dir, GITHUB_* variables for a pull_request event, and `trtci` on a path.

    `trtci run` is the lead's pipeline; here a stand-in does what it does for the steps (writes the report, the
    job summary, a real run file under --bundle-dir) and exits with the scripted code, so the steps' own shell
    logic (exit codes, outputs, gating) is what is tested. `trtci comment` and `trtci merge` are real.
    """
    event = ROOT / "tests" / "data" / "events-gh" / "pull_request.opened.json"
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    fake = executable(
        tmp_path / "trtci",
        "#!/bin/bash\n"
        'if [ "$1" = run ]; then\n'
        "  while [ $# -gt 0 ]; do\n"
        '    case "$1" in\n'
        '      --report) printf "## trtci report\\n" > "$2" ;;\n'
        f'      --db) "{sys.executable}" -c "{RECORD_RUN}" "$2" ;;\n'
        f'      --bundle-dir) "{sys.executable}" -c "{WRITE_RUN_FILE}" "$2" ;;\n'
        "    esac\n"
        "    shift\n"
        "  done\n"
        '  printf "## trtci summary\\n" >> "$GITHUB_STEP_SUMMARY"\n'
        '  echo "regressions=${FAKE_REGRESSIONS:-0}" >> "$GITHUB_OUTPUT"; exit "${FAKE_EXIT:-0}"\n'
        "fi\n"
        f'exec "{sys.executable}" -c "import click; from trtci.cli.github import register; '
        "g = click.Group('trtci'); register(g); g(prog_name='trtci')\" \"$@\"\n",
    )
    executable(tmp_path / "python", f'#!/bin/bash\nexec "{sys.executable}" "$@"\n')  # the venv's, beside trtci
    base_env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_REPOSITORY": json.loads(event.read_text())["repository"]["full_name"],
        "GITHUB_API_URL": github.url,
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
    }
    context = {"inputs": {}, "steps": {"install": {"trtci": fake}}, "temp": str(temp), "token": github.token, "log": ""}
    for name, spec in action()["inputs"].items():
        default = str(spec.get("default", ""))
        context["inputs"][name] = evaluate(default, context)
    return context, base_env, tmp_path


def test_steps_pass_post_one_comment_and_gate_green(runner, github):
    context, env, tmp = runner
    for step in ("preflight", "run", "comment", "gate"):
        assert run_step(step, context, env, tmp) == 0, context["log"]
    run = context["steps"]["run"]
    assert run["verdict"] == "pass" and run["exit-code"] == "0" and run["regressions"] == "0"
    assert Path(run["report"]).read_text() == "## trtci report\n"
    # The job summary is `trtci run`'s (capped) summary only: the steps never append the comment's report.
    assert Path(env["GITHUB_STEP_SUMMARY"]).read_text() == "## trtci summary\n"
    assert len(github.issue_comments("Codertocat/Hello-World", 2)) == 1
    assert run_step("comment", context, env, tmp) == 0
    assert len(github.issue_comments("Codertocat/Hello-World", 2)) == 1  # on-change: still one comment


def test_regression_still_comments_then_gate_fails_with_1(runner, github):
    context, env, tmp = runner
    env = {**env, "FAKE_EXIT": "1", "FAKE_REGRESSIONS": "2"}
    assert run_step("run", context, env, tmp) == 0  # the run step records the code; the gate step fails
    assert context["steps"]["run"]["verdict"] == "fail"
    assert run_step("comment", context, env, tmp) == 0
    assert run_step("gate", context, env, tmp) == 1
    assert "::error title=trtci::trtci run exited with 1" in context["log"]
    assert len(github.issue_comments("Codertocat/Hello-World", 2)) == 1


def test_publish_failure_fails_the_gate_with_5(runner, github):
    context, env, tmp = runner
    context["inputs"]["github-token"] = "wrong-token"
    assert run_step("run", context, env, tmp) == 0
    assert run_step("comment", context, env, tmp) == 0
    assert context["steps"]["comment"]["exit-code"] == "5"
    assert run_step("gate", context, env, tmp) == 5
    assert github.issue_comments("Codertocat/Hello-World", 2) == []
    assert "wrong-token" not in context["log"].replace("::add-mask::wrong-token", "")


def test_hostile_inputs_stay_data(runner, github):
    context, env, tmp = runner
    context["inputs"]["marker-id"] = '$(touch pwned)"; touch pwned2 #'
    context["inputs"]["threshold"] = "`touch pwned3`"
    run_step("run", context, {**env}, tmp)
    run_step("comment", context, env, tmp)
    assert not any((Path.cwd() / n).exists() or (tmp / n).exists() for n in ("pwned", "pwned2", "pwned3"))
    assert context["steps"]["comment"]["exit-code"] == "2"  # the marker id is rejected as input


def test_fork_code_under_pull_request_target_is_refused_by_preflight(runner, tmp_path):
    context, env, tmp = runner
    data = json.loads(Path(env["GITHUB_EVENT_PATH"]).read_text())
    data["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World"
    forked = tmp_path / "fork-event.json"
    forked.write_text(json.dumps(data))
    env = {**env, "GITHUB_EVENT_NAME": "pull_request_target", "GITHUB_EVENT_PATH": str(forked)}
    assert run_step("preflight", context, env, tmp) == 2
    assert "::error title=trtci::refusing to benchmark code from the fork" in context["log"]
    context["inputs"]["allow-fork-code"] = "true"
    assert run_step("preflight", context, env, tmp) == 0


def hostile_workspace(root: Path) -> Path:
    """A pull request's checkout that plants modules Python would run from the current directory."""
    root.mkdir()
    for name in ("venv", "pip", "ensurepip", "sitecustomize", "usercustomize", "json", "os"):
        (root / f"{name}.py").write_text(f"open({str(root / 'pwned')!r}, 'a').write({name!r})\n")
    shadow = root / "trtci" / "github"
    shadow.mkdir(parents=True)
    (root / "trtci" / "__init__.py").write_text(f"open({str(root / 'pwned')!r}, 'a').write('trtci')\n")
    (shadow / "__init__.py").write_text("")
    return root


def test_preflight_runs_first_and_runs_nothing_from_the_workspace(runner, tmp_path):
    context, env, tmp = runner
    ids = [s.get("id") for s in action()["runs"]["steps"]]
    assert ids.index("preflight") == 0 and ids.index("install") == 1
    workspace = hostile_workspace(tmp_path / "workspace")
    data = json.loads(Path(env["GITHUB_EVENT_PATH"]).read_text())
    data["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World"
    forked = tmp_path / "fork-event.json"
    forked.write_text(json.dumps(data))
    env = {
        **env,
        "GITHUB_EVENT_NAME": "pull_request_target",
        "GITHUB_EVENT_PATH": str(forked),
        "PYTHONPATH": str(workspace),
    }
    assert run_step("preflight", context, env, tmp, cwd=workspace) == 2, context["log"]
    assert "refusing to benchmark code from the fork mallory/Hello-World" in context["log"]
    assert not (workspace / "pwned").exists(), (workspace / "pwned").read_text()
    # The same event from the repository itself passes, still without touching the workspace's files.
    assert run_step("preflight", context, {**env, "GITHUB_EVENT_NAME": "pull_request"}, tmp, cwd=workspace) == 0
    assert context["steps"]["preflight"]["is-fork"] == "true"
    assert not (workspace / "pwned").exists()


@pytest.mark.slow
def test_install_step_runs_no_workspace_code(tmp_path):
    """The real install step (venv, hash-pinned dependencies, trtci from the action's files) in a hostile checkout."""
    workspace = hostile_workspace(tmp_path / "workspace")
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    context = {"inputs": {"python": sys.executable, "pip-args": "--quiet"}, "steps": {}, "temp": str(temp), "log": ""}
    context["token"] = "unused"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GITHUB_ACTIONS": "true"}
    code = run_step("install", context, env, tmp_path, cwd=workspace)
    assert code == 0, context["log"]
    assert not (workspace / "pwned").exists(), (workspace / "pwned").read_text()
    installed = Path(context["steps"]["install"]["trtci"])
    assert installed.parent.parent == temp / "trtci-venv"
    version = subprocess.run([str(installed), "--version"], capture_output=True, text=True, cwd=workspace)
    assert version.returncode == 0 and "trtci, version" in version.stdout, version.stderr


def test_the_pinned_requirements_satisfy_pyproject():
    """requirements/action.txt (hash-pinned, what the action installs) must cover every dependency in pyproject."""
    import tomllib
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    pins: dict[str, list[tuple[str, str]]] = {}
    for line in (ROOT / "requirements" / "action.txt").read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9_.-]+)==([^ ;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$", line):
            pins.setdefault(m[1].lower().replace("_", "-"), []).append((m[2], m[3] or ""))
    lines = (ROOT / "requirements" / "action.txt").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[A-Za-z0-9_.-]+==", line):
            assert "--hash=sha256:" in lines[i + 1], f"{line}: pinned without a hash"
    env = default_environment()
    for text in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in requirements/action.txt: regenerate it (requirements/README.md)"
        versions = [v for v, marker in pins[name] if not marker or Requirement(f"x; {marker}").marker.evaluate(env)]
        assert versions and all(requirement.specifier.contains(v) for v in versions), (name, pins[name])


def fork_pull_request_event(tmp_path: Path, number: int = 7) -> tuple[Path, str]:
    """pull_request.opened.json as a fork's pull request `number` sends it; returns its path and head SHA."""
    data = json.loads((ROOT / "tests" / "data" / "events-gh" / "pull_request.opened.json").read_text())
    data["number"] = data["pull_request"]["number"] = number
    data["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World"
    path = tmp_path / "fork-pull-request.json"
    path.write_text(json.dumps(data))
    return path, data["pull_request"]["head"]["sha"]


def commenter_run(tmp_path: Path, head_sha: str) -> Path:
    """workflow_run.completed.json as GitHub sends it after a fork's pull_request run: the fork's head
    repository, no pull_requests."""
    data = json.loads((ROOT / "tests" / "data" / "events-gh" / "workflow_run.completed.json").read_text())
    run = data["workflow_run"]
    run.update(event="pull_request", head_sha=head_sha, pull_requests=[])
    run["head_repository"]["full_name"] = "mallory/" + run["repository"]["name"]
    path = tmp_path / "workflow-run.json"
    path.write_text(json.dumps(data))
    return path


def run_commenter(github, env: dict[str, str], event: Path, uploaded: Path, tmp_path: Path, tmp: Path) -> dict:
    """The commenter workflow's job, as the runner would run it: the artifact downloaded where the job says,
    then every `run:` step in order (the install left out: the venv it makes links to the installed trtci; see
    the next test)."""
    job = load(EXAMPLES / "fork-safe-comment.yml")["jobs"]["comment"]
    download = next(s for s in job["steps"] if "download-artifact" in s.get("uses", ""))
    assert download["with"]["name"] == "trtci-results"
    commenter = {"inputs": {}, "steps": {}, "temp": str(tmp_path / "commenter-temp"), "token": github.token, "log": ""}
    venv_bin = Path(commenter["temp"]) / "trtci-venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "trtci").symlink_to(shutil.which("trtci", path=env["PATH"]))
    shutil.copytree(uploaded, evaluate(download["with"]["path"], commenter))  # the artifact, as downloaded
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    data = json.loads(event.read_text())
    commenter_env = {
        **env,
        "GITHUB_EVENT_NAME": "workflow_run",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_REPOSITORY": data["workflow_run"]["repository"]["full_name"],
        "GITHUB_STEP_SUMMARY": str(tmp_path / "commenter-summary.md"),
        "RUNNER_TEMP": commenter["temp"],
    }
    steps = [s for s in job["steps"] if "run" in s]
    for i, step in enumerate(s for s in steps if "pip install" not in s["run"]):
        code = run_bash(step, step.get("id", f"step-{i}"), commenter, commenter_env, tmp, cwd=workspace)
        commenter["exit"] = code
        if code != 0:
            break
    return commenter


@pytest.mark.slow
def test_the_commenter_installs_trtci_from_its_pinned_checkout_with_hashes(tmp_path):
    """The commenter's real install step: trtci's own repository checked out where the job says (here: this
    tree), hash-pinned requirements, a venv under RUNNER_TEMP that the later steps run; no pull request file
    anywhere, and no write to GITHUB_PATH (zizmor's github-env)."""
    job = load(EXAMPLES / "fork-safe-comment.yml")["jobs"]["comment"]
    checkout = next(s for s in job["steps"] if "actions/checkout" in s.get("uses", ""))
    assert checkout["with"]["persist-credentials"] is False and re.fullmatch(r"[0-9a-f]{40}", checkout["with"]["ref"])
    [install] = [s for s in job["steps"] if "pip install" in s.get("run", "")]
    assert "--require-hashes" in install["run"] and "trtci==" not in install["run"]  # nothing unpinned from PyPI
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / checkout["with"]["path"]).symlink_to(ROOT)
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GITHUB_WORKSPACE": str(workspace)}
    env.update(RUNNER_TEMP=str(temp), PIP_QUIET="1")
    context = {"inputs": {}, "steps": {}, "temp": str(temp), "token": "unused", "log": ""}
    assert run_bash(install, "install", context, env, tmp_path, cwd=workspace) == 0, context["log"]
    later = [s["run"] for s in job["steps"] if "run" in s and s is not install]
    assert all("$RUNNER_TEMP/trtci-venv/bin/trtci" in run for run in later)  # the steps after run what it installed
    version = subprocess.run([str(temp / "trtci-venv" / "bin" / "trtci"), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and "trtci, version" in version.stdout, version.stderr


def test_fork_safe_pair_uploads_a_run_file_that_the_commenter_merges_and_posts(runner, github, tmp_path):
    context, env, tmp = runner
    event, head_sha = fork_pull_request_event(tmp_path)
    env = {**env, "GITHUB_EVENT_PATH": str(event)}
    bench = load(EXAMPLES / "fork-safe.yml")["jobs"]["bench"]["steps"]
    uses = next(s for s in bench if s.get("id") == "trtci")
    context["inputs"].update({name: str(value) for name, value in uses["with"].items()})
    assert run_step("run", context, env, tmp) == 0, context["log"]
    upload = next(s for s in bench if "upload-artifact" in s.get("uses", ""))
    uploaded = Path(evaluate(upload["with"]["path"], context))

    repo = "octo-org/octo-repo"  # workflow_run.completed.json's repository
    github.add_pull(repo, 7, head_sha, fork=True)  # missing from GET /commits/{sha}/pulls, as on GitHub
    env = {**env, "PATH": os.pathsep.join([str(Path(context["steps"]["install"]["trtci"]).parent), env["PATH"]])}
    commenter = run_commenter(github, env, commenter_run(tmp_path, head_sha), uploaded, tmp_path, tmp)
    assert commenter["exit"] == 0, commenter["log"]
    assert commenter["steps"]["merge"]["pr-number"] == "7"
    [posted] = github.issue_comments(repo, 7)
    assert "Merged from 1 leg: **pr**" in posted["body"]


def test_fork_safe_commenter_posts_nowhere_when_the_claimed_pull_request_is_not_at_the_runs_head(
    runner, github, tmp_path
):
    context, env, tmp = runner
    event, head_sha = fork_pull_request_event(tmp_path, number=8)
    env = {**env, "GITHUB_EVENT_PATH": str(event)}
    context["inputs"].update({"comment-mode": "never", "leg": "pr"})
    assert run_step("run", context, env, tmp) == 0, context["log"]
    uploaded = Path(context["temp"]) / "trtci" / "bundles"

    repo = "octo-org/octo-repo"
    github.add_pull(repo, 8, "f" * 40, fork=True)  # the run file names #8, whose head is another commit
    env = {**env, "PATH": os.pathsep.join([str(Path(context["steps"]["install"]["trtci"]).parent), env["PATH"]])}
    commenter = run_commenter(github, env, commenter_run(tmp_path, head_sha), uploaded, tmp_path, tmp)
    assert commenter["exit"] == 0, commenter["log"]
    assert "::notice title=trtci comment stale::the results name pull request #8" in commenter["log"]
    assert github.issue_comments(repo, 8) == [] and github.requests("POST") == []


def test_preflight_needs_nothing_but_the_standard_library():
    """The action runs preflight before installing anything, on whatever Python the runner has."""
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); before = set(sys.modules); import trtci.github.preflight; "
        "print(' '.join(m for m in set(sys.modules) - before if m.split('.')[0] not in sys.stdlib_module_names))"
    )
    out = subprocess.run([sys.executable, "-I", "-c", probe, str(ROOT)], capture_output=True, text=True, check=True)
    assert set(out.stdout.split()) == {
        "trtci",
        "trtci.errors",
        "trtci.github",
        "trtci.github.actions",
        "trtci.context",
        "trtci.context.event",
        "trtci.github.preflight",
    }


@pytest.mark.parametrize("trigger", ["workflow_run", "issue_comment"])
def test_preflight_refuses_a_privileged_event_that_does_not_name_its_head_repository(runner, tmp_path, trigger):
    context, env, tmp = runner
    if trigger == "workflow_run":
        data = json.loads((ROOT / "tests" / "data" / "events-gh" / "workflow_run.completed.json").read_text())
        data["workflow_run"]["head_repository"] = None
    else:  # a ChatOps "/benchmark" comment on a pull request: the payload never names the head's repository
        repository = json.loads(Path(env["GITHUB_EVENT_PATH"]).read_text())["repository"]
        data = {"action": "created", "issue": {"number": 2, "pull_request": {"url": "u"}}, "repository": repository}
    event = tmp_path / "event.json"
    event.write_text(json.dumps(data))
    env = {**env, "GITHUB_EVENT_NAME": trigger, "GITHUB_EVENT_PATH": str(event)}
    assert run_step("preflight", context, env, tmp) == 2, context["log"]
    assert "::error title=trtci::refusing to benchmark code from a head commit" in context["log"]
    assert context["steps"]["preflight"] == {}


def runs_in(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute("select count(*) from runs").fetchone()[0]


@pytest.mark.parametrize("event", ["pull_request", "pull_request_target", "issue_comment", "workflow_run"])
def test_a_persistent_history_is_only_read_by_untrusted_events(runner, tmp_path, event):
    context, env, tmp = runner
    history = tmp_path / "persistent" / "history.db"
    history.parent.mkdir()
    with contextlib.closing(sqlite3.connect(history)) as db:
        db.executescript("create table runs (n); insert into runs values (0);")
    context["inputs"]["database"] = str(history)
    assert run_step("run", context, {**env, "GITHUB_EVENT_NAME": event}, tmp) == 0, context["log"]
    used = Path(context["steps"]["run"]["database"])
    assert used != history and used.parent == Path(context["temp"]) / "trtci"
    assert (runs_in(history), runs_in(used)) == (1, 2)  # the run saw the history and wrote only the copy
    assert f"::notice title=trtci::a {event} run compares against a copy of the history" in context["log"]
    (tmp / "output-run").unlink()
    history.unlink()  # no history yet: the run starts an empty copy, and still leaves the path alone
    assert run_step("run", context, {**env, "GITHUB_EVENT_NAME": event}, tmp) == 0, context["log"]
    assert not history.exists() and runs_in(Path(context["steps"]["run"]["database"])) == 1


@pytest.mark.parametrize("event", ["push", "schedule", "workflow_dispatch", "merge_group"])
def test_a_persistent_history_is_written_by_trusted_events(runner, tmp_path, event):
    context, env, tmp = runner
    history = tmp_path / "history.db"
    context["inputs"]["database"] = str(history)
    assert run_step("run", context, {**env, "GITHUB_EVENT_NAME": event}, tmp) == 0, context["log"]
    assert Path(context["steps"]["run"]["database"]) == history and runs_in(history) == 1
    assert "copy of the history" not in context["log"]


def test_database_write_always_lets_pull_requests_write_the_history(runner, tmp_path):
    context, env, tmp = runner
    history = tmp_path / "history.db"
    context["inputs"].update({"database": str(history), "database-write": "always"})
    assert run_step("run", context, env, tmp) == 0, context["log"]
    assert Path(context["steps"]["run"]["database"]) == history and runs_in(history) == 1
    context["inputs"]["database-write"] = "sometimes"
    assert run_step("run", context, env, tmp) == 2
    assert "::error title=trtci::database-write must be trusted or always" in context["log"]
    assert runs_in(history) == 1
