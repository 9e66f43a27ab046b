"""The ``nanobatch`` command line: argv and the environment in, exit codes out."""

import sys
from types import ModuleType

# httpx's package imports its own command-line tool whenever click, rich and pygments can be
# imported (here they can: typer, the progress display and structlog bring them), ~25 ms of
# every command's start-up for a tool this process never runs. An empty stand-in makes that
# import fail as it does without them; httpx then defines the stub it uses in that case.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", ModuleType("httpx._main"))
