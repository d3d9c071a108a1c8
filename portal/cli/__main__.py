"""`python -m portal.cli`: the `filr` command, as the scheduler starts each job."""

from portal.cli import main

main()
