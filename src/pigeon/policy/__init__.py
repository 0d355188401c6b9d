"""pigeon.policy: receive-time decisions, as staged checks in a pipeline.

Modules:
    api           the interface: stage Protocols, Verdict, SessionFacts, Message
    pipeline      ReceivePipeline (runs the checks of a stage) and ReceiveSession
    build         build_pipeline(config, deps): the one place checks are composed
    relay         RelayControl, EtrnTrust (relay_networks, logged-in clients)
    recipients    LocalRecipients (550 5.1.1), RecipientMerge (each recipient once)
    newmailboxes  limits.new_mailboxes_per_hour: the limiter and its two checks
    reserve       MessageSizeLimit (552 5.3.4 for SIZE=), StorageReserve (452 4.3.1 below queue.min_free)
    submission    SenderOwnership, FromHeaderCheck (logged-in users send as themselves)
    message       SpoolMessage: the message as end-of-data checks read it
    spf           check_host(): the SPF evaluator (RFC 7208), not yet a stage (issue 13)

Importing this package imports nothing.
"""
