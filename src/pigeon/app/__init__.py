"""The composition root and the lifecycle of a pigeon process.

    pigeon.app.run(config, reload_config)     # what `pigeon serve` calls

The only place where pigeon's parts are created and wired together
(CONTRIBUTING.md, rule 11); nothing registers itself at import time.

  main       the entry point: data_dir checks, one process or several
  lifecycle  one process: start-up order, signals, reload, the stop, exit status
  deadline   the stop's hard deadline: whatever still runs then, the process leaves
  roles      the process roles, built by factories: "full" and "acceptor"
  wiring     one small function per part built from the configuration
  reload     the pure difference between two configurations (`plan_reload`)
  workers    `workers > 1`: prepare once, fork the acceptors, supervise
  exits      failures -> the documented exit statuses (0, 69, 73, 77, 78)

Imports point one way: main -> workers -> lifecycle -> roles -> wiring, and
every one of them may use reload, exits and deadline, which import nothing
of the app.
"""

from pigeon.app.main import run

__all__ = ["run"]
