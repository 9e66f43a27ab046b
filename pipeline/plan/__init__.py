"""What a run has to do: manifest readers, row resolution, sources, fingerprints, the plan."""
