"""Regional compliance plugins: restrictions on what may ship where."""
