"""pigeon.hooks: users' Python code in the receive pipeline and on delivery events.

Modules:
    api        what a plugin writes with: reject/tempfail/accept/discard/quarantine,
               PluginContext (name, logger, state directory, submit)
    events     DeliveryEvent and DeliveryObservers (the queue manager emits, plugins hear)
    guard      a plugin as a receive check: time limit, answers checked
    settings   a plugin's own table checked against its Settings dataclass
    load       [[plugins]] -> loaded plugins (ConfigErrors naming the key)

The user's guide is docs/hooks.md; the names plugins import are in pigeon.api.
Importing this package imports nothing.
"""
