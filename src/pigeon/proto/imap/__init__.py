"""pigeon.proto.imap: the sans-IO IMAP4rev2 / IMAP4rev1 server protocol core (RFC 9051, RFC 3501).

Bytes and values in, values and bytes out: no sockets, no asyncio, no clock,
no files (tests/unit/proto/test_no_io.py). Modules, from the bottom up:
    lexer        the lexical items of a command (atoms, strings, literals)
    mutf7        modified UTF-7 mailbox names (RFC 3501 §5.1.3)
    seqset       sequence sets and UID sets
    fetchspec    FETCH attributes and body sections
    searchparse  SEARCH criteria as a key tree
    commands     the typed values of the commands (Command and its arguments)
    grammar      every command's arguments parsed into those values
    reader       the literal-aware command reader (events for the driver)
    response     the response encoder (strings vs literals, codes, FETCH)
    envelope     header fields and ENVELOPE
    mime         the MIME tree of a message: BODYSTRUCTURE and BODY (cacheable)
    sections     BODY[section]<partial> and BINARY octets
    fetchrender  FETCH items computed from a message's octets
    search       evaluation of a key tree against a message view
    state        the session states, the commands each allows, capabilities
"""
