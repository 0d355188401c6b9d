"""Recipient routing: alias expansion and local/remote resolution."""
from pigeon.routing.resolve import Route, Router

__all__ = ["Route", "Router"]
