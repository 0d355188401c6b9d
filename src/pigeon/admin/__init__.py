"""Administration: control socket, queue operations, metrics endpoint, systemd notify.

`start_admin` (admin.wiring) is the one entry point the composition root
calls; `ControlClient` (admin.client) is what the command line uses.
"""
