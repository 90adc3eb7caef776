"""Persistence: piccolo tables, the database connection and the repositories."""
