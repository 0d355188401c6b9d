"""Read IMAP response values back (test helper): NIL, numbers, strings, literals, lists.

Used to compare our FETCH output with Dovecot's whatever the quoting chosen
(a quoted string and a literal with the same octets read as the same value).
"""

from __future__ import annotations

Value = object


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def peek(self) -> int:
        return self.data[self.pos]

    def skip_spaces(self) -> None:
        while self.pos < len(self.data) and self.data[self.pos] == 0x20:
            self.pos += 1

    def value(self) -> Value:
        self.skip_spaces()
        c = self.peek()
        if c == ord("("):
            self.pos += 1
            items = []
            while True:
                self.skip_spaces()
                if self.peek() == ord(")"):
                    self.pos += 1
                    return items
                items.append(self.value())
        if c == ord('"'):
            out = bytearray()
            self.pos += 1
            while self.data[self.pos] != ord('"'):
                if self.data[self.pos] == ord("\\"):
                    self.pos += 1
                out.append(self.data[self.pos])
                self.pos += 1
            self.pos += 1
            return bytes(out)
        if c in (ord("{"), ord("~")):
            start = self.data.index(b"{", self.pos)
            end = self.data.index(b"}\r\n", start)
            n = int(self.data[start + 1 : end].rstrip(b"+"))
            self.pos = end + 3
            out = self.data[self.pos : self.pos + n]
            self.pos += n
            return bytes(out)
        start = self.pos
        depth = 0
        while self.pos < len(self.data):
            ch = self.data[self.pos]
            if ch == ord("["):
                depth += 1
            elif ch == ord("]"):
                depth -= 1
            elif depth == 0 and ch in b" )":
                break
            self.pos += 1
        word = self.data[start : self.pos].decode("latin-1")
        if word == "NIL":
            return None
        return int(word) if word.isdigit() else word


def parse_value(data: bytes) -> Value:
    return _Reader(data).value()


def parse_fetch(line: bytes) -> dict[str, Value]:
    """'* 1 FETCH (A x B y)' (a whole response, literals included) -> {"A": x, "B": y}."""
    start = line.index(b"FETCH (") + len(b"FETCH ")
    items = parse_value(line[start:])
    assert isinstance(items, list)
    return {str(items[i]): items[i + 1] for i in range(0, len(items), 2)}
