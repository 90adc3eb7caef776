"""The Engine's services, one per area; each is reached as ``engine.<area>``."""
