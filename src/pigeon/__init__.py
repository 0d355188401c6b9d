"""pigeon: a mail transfer agent.

The public surface is kept small; see docs/architecture.md for how the parts fit.
"""

import os

if os.environ.get("PIGEON_PURE") == "1":  # plain Python even where compiled (pigeon/compiled.py)
    from pigeon.compiled import prefer_sources

    prefer_sources()

__version__ = "0.2.0"
__all__ = ["__version__"]
