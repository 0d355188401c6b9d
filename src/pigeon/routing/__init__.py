"""Recipient routing: alias expansion, next-hop choice (`resolve`) and MX lookup (`mx`)."""

from pigeon.routing.mx import Candidate, MxResolver, ResolveError, own_identity
from pigeon.routing.resolve import Route, Router

__all__ = ["Candidate", "MxResolver", "ResolveError", "Route", "Router", "own_identity"]
