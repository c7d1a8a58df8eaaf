"""Where a run happens: the commit, branch and pull request (git, the CI event), and the host."""
