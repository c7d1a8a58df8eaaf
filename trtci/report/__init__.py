"""Rendering a run for people and tools; no decisions are taken here (they come with the run from trtci.verdict).

markdown.py      the PR comment and job summary from jinja2 templates (templates/, overridable), the console table
json_summary.py  the `--json` summary (docs/json-summary.md)
triton.py        a Triton `config.pbtxt` from plain data; trtexec_command.py: the trtexec line of a TensorRT series
dashboard.py     one self-contained HTML page of trends, regressions and change points, and the comment's trends

Report may import verdict, store, backends' result types, context, config, results and errors; never pipeline,
github or cli. Templates hold the markup; these modules hold none.
"""
