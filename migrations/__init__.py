"""Schema migrations (piccolo's migration format), identical on SQLite and PostgreSQL."""
