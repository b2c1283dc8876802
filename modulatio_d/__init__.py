"""modulatio_d: run the approved Markdown plans of a vault, one sub-objective at a time."""

__version__ = "0.1.0"
