"""The IMAP server's per-connection side: the driver and the command handlers.

Modules (each one concern; the service is pigeon.readers.imap_service):

    connection   the driver: TLS, greeting, the read loop and its time-outs,
                 IDLE wake-ups and polls, the stop
    session      one session: the sans-IO reader and state
                 (pigeon.proto.imap), the selected Folder handle, the
                 untagged updates (RFC 9051 §7), mailbox I/O in threads
    dispatch     the one table of commands the session runs
    cmd_any      CAPABILITY NOOP CHECK LOGOUT ID ENABLE NAMESPACE STARTTLS
    cmd_auth     LOGIN AUTHENTICATE
    cmd_mailboxes  SELECT EXAMINE CLOSE UNSELECT CREATE DELETE RENAME
                 (UN)SUBSCRIBE LIST LSUB STATUS
    cmd_fetch    FETCH
    cmd_search   SEARCH
    cmd_messages STORE COPY MOVE EXPUNGE APPEND
    cmd_idle     IDLE
    targets      sequence sets resolved against the session's view
    bodycache    BODYSTRUCTURE / ENVELOPE computed once per message, kept in
                 a bounded in-memory cache shared by every session

Importing this package imports nothing.
"""
