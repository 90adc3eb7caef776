"""API fuzzing: schemathesis against a real ``ordnung serve`` (see ``run_schemathesis``)."""
