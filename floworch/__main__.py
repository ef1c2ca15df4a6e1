"""``python -m floworch``: the floworch command."""

from floworch.cli.main import main

main()
