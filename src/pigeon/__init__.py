"""pigeon: a mail transfer agent.

The public surface is kept small; see docs/architecture.md for how the parts fit.
"""

__version__ = "0.2.0"
__all__ = ["__version__"]
