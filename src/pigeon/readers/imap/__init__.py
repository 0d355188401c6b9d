"""The IMAP server's per-connection side: the driver and the command handlers.

Modules (each one concern; the service is pigeon.readers.imap_service):

    connection   the driver: TLS, greeting, the read loop and its time-outs,
                 literals, the stop; feeds bytes to the sans-IO core
                 (pigeon.proto.imap) and runs each command's handler
    bodycache    BODYSTRUCTURE / ENVELOPE computed once per message, kept in
                 a bounded in-memory cache shared by every session
    view         one session's view of its selected mailbox: sequence
                 numbers, the changes it has not been told of yet (RFC 9051 §7)
    handlers     the commands, one small module per family

Importing this package imports nothing.
"""
