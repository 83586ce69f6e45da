"""wolfpack node agent: one emulated MSCS node (see README and shared DESIGN.md)."""

__version__ = "0.1.0"
