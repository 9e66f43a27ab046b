"""Running a plan: the run shell, the online executor, pacing, stopping well."""
