"""The web console (docs/console.md): HTML pages for operators, beside the HTTP API.

Served by the same aiohttp application as the API (pigeon.web), on the
`[console] listen` listener; `console.app.add_console` adds its pages and
middlewares. Everything outside /api/ but the login page, the static files
and the health endpoints needs an admin session (console/guard.py).
"""
