"""Publishing to GitHub: the only package that speaks GitHub's REST API (requests) and the runner's protocols.

api.py        the REST client with GitHub's retry and rate-limit rules
comment.py    the one sticky pull-request comment, safe under racing runs
checks.py     commit statuses and check runs from the gate's verdict
artifacts.py  the base branch's results artifact (`trtci baseline fetch`), size-capped and validated
actions.py    step outputs, the job summary and workflow commands (`::error::`), escaped
preflight.py  refuse fork code under privileged triggers; runs on the standard library alone, before install

GitHub code may import everything below it (pipeline, report, verdict, store, context, ...); only cli imports it.
"""
