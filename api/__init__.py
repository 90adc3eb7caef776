"""The thin HTTP (and later GraphQL) adapter over the Engine, plus the ``ordnung`` command line."""
