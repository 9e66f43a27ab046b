"""The wire: one protocol per folder behind a Provider seam, and the HTTP layer."""
