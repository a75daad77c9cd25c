"""HygieSync: person-specific lip-sync. The library behind the DVC stages and the `hygie` CLI."""

__version__ = "0.1.0"
