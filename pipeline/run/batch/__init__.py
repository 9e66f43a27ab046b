"""The batch executor: rows collected into Batch API jobs, polled, and folded into the ledger."""
