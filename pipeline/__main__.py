"""``python -m pipeline`` is the ``nanobatch`` command."""

from pipeline.cli.app import main

main()
