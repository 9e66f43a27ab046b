"""What each command does beyond running: validate, verify, report, status, progress, summary."""
