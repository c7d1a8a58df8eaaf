"""The results database (the only place that runs SQL), run files and history on a git branch."""
