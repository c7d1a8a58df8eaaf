"""Decisions, from measured numbers to verdicts that carry their own reasons.

stats.py            bootstrap intervals, run-to-run noise, the normal quantile: the statistics, on plain arrays
abtest.py           interleaved A/B rounds of two callables and their ratio interval, valid at every look
attribution.py      what changed for a series since the base: nothing, code, environment or device
machine.py          the machine's speed: each run's canary against the base's, an index history divides by
attributed.py       history comparisons read in the light of what changed and of the machine's speed
latency.py          each series against the base branch (attributed; history or the A/B): regression, ...
policy.py           which found changes fail the gate (pre-merge) and which are reported (post-merge, environment)
accuracy.py         a lower precision's outputs against FP32: top-1/top-5 ratio, agreement, cosine, SQNR
accuracy_change.py  each precision's top-1 against the base branch's, paired by validation sample
speedup.py          a lower precision against FP32 of the same series: faster, or slower (never a win)
changepoints.py     where a series' history stepped
engine_layers.py    an engine's layers from the inspector's JSON and a per-layer profile (precisions, tactics)
layer_diff.py       what changed between two engines' layers, ranked by share of the time change
gate.py             the one gate: what fails the check under fail-on, the counts and the one-line verdict

Verdict may import store (read-only queries), backends' result types, context, config, results and errors;
never pipeline, report, github or cli.
"""
