"""pigeon.queue: the durable queue, storage only (docs/architecture.md, "Layers").

What the rest of pigeon may ask of a queue store is in `pigeon.queue.api`
(Intake, QueueStateStore, QueueQueries, ContentStore, StorageStatus; all
together `QueueBackend`). The embedded backend is `pigeon.queue.store.QueueStore`
(content files plus SQLite); its parts and their rules are listed at the
top of queue/store.py. Nothing is imported here, so importing one module of
the package costs only what that module needs.
"""
