"""Schema migrations: portable statements, identical on SQLite and PostgreSQL, applied by
``Database.migrate``."""
