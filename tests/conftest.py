"""Fixtures shared by several test files. Builders live in plain helper modules beside the tests (models.py,
sample_runs.py, recorded_runs.py, git_repos.py, locks.py, cli_runner.py, log_lines.py, github_server.py): test files
import those, never each other."""

from tests.git_repos import origin  # noqa: F401  (the `origin` fixture: a bare repository with one commit)
