"""The online executor: one request per row (see ``executor``)."""

from pipeline.run.online.executor import OnlineExecutor, workers

__all__ = ["OnlineExecutor", "workers"]
