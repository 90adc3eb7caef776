"""Domain types: plain msgspec Structs, no behaviour that needs a database."""
