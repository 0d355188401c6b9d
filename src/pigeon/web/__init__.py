"""The HTTP side of pigeon: the JSON API (docs/api.md) and, later, the web console.

One aiohttp application on its own listener (`[console] listen`), in the
event loop of the process that runs the queue manager (app/console.py
starts it beside the control socket). It asks, it never owns: queue reads
and actions go through the control socket's operations
(pigeon.admin.ops, the queue manager's operator), exactly as `pigeon queue`
does.
"""
