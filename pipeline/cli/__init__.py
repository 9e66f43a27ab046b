"""The ``nanobatch`` command line: argv and the environment in, exit codes out."""

import sys

# httpx's package imports its own command-line tool whenever click, rich and pygments can be
# imported (here they can: uvicorn brings click, the progress display rich), ~25 ms of every
# command's start-up for a tool this process never runs. None in sys.modules blocks that one
# import, as Python documents; httpx then defines the stub it uses when they are missing.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
