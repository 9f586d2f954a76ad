"""`python -m worker.cli`: the `thankly` command without the installed script."""

from worker.cli.main import main

main()
