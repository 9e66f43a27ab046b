"""The ``nanobatch`` command line: argv and the environment in, exit codes out."""
