"""``python -m pipeline`` is the ``nanobatch`` command."""

from pipeline.cli import main

main()
