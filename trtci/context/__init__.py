"""Where a run happens: the commit, branch and pull request (git, the CI event), and the host.

git.py is the one place trtci runs git; event.py the one reader of GitHub event payloads (standard library
only: the preflight loads it before trtci's dependencies are installed, so this file imports nothing).
"""
