"""Stores beyond the embedded queue: PostgreSQL for several nodes (issue 17).

`pigeon.store.pg` implements the queue interfaces (pigeon/queue/api.py)
over one PostgreSQL database shared by every node; the embedded store
(pigeon/queue/store.py) stays the default and is not touched by it.
"""
