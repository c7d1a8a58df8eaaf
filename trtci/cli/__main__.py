"""`python -m trtci.cli`: the `trtci` command, where the console script is not on PATH."""

from trtci.cli import main

main()
