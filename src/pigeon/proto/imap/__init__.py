"""pigeon.proto.imap: the sans-IO IMAP4rev2 / IMAP4rev1 server protocol core (RFC 9051, RFC 3501).

Bytes and values in, values and bytes out: no sockets, no asyncio, no clock,
no files (tests/unit/proto/test_no_io.py). Modules, from the bottom up:
    lexer        the lexical items of a command (atoms, strings, literals)
    mutf7        modified UTF-7 mailbox names (RFC 3501 §5.1.3)
    seqset       sequence sets and UID sets
    fetchspec    FETCH attributes and body sections
    searchparse  SEARCH criteria as a key tree
    grammar      every command's arguments as typed values
    reader       the literal-aware command reader (events for the driver)
    response     the response encoder (strings vs literals, codes, FETCH)
    mime         ENVELOPE, BODYSTRUCTURE and BODY[section] from message bytes
    search       evaluation of a key tree against a message view
    state        the session states, the commands each allows, capabilities
"""
