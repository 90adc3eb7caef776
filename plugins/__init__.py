"""Built-in plugins. Each is an ordinary pluggy plugin, registered through the
``ordnung`` entry-point group exactly as a third party's would be."""
