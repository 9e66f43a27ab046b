"""What survives a crash: the journal and Parquet ledger, image files, in-flight notes."""
