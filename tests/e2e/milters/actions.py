"""A milter on Debian's libmilter (python3-milter) that takes the actions a message asks for.

Run by /usr/bin/python3 (pigeon.testing.milters.libmilter) with the socket
as its argument. It takes what neither OpenDKIM nor rspamd does, so the
tests can see every modification action of the protocol go through pigeon:

  X-Test-Action: a comma-separated list, at end of message, of
    macros          add X-Macros: the macros seen at each stage
    insert-header   insert X-Inserted-Top at index 0 and X-Inserted-2 at 2
    change-header   change the first Subject:, remove the 2nd X-Remove-Me:
    add-header      add X-Added: at the end of the header section
    replace-body    replace the body
    add-rcpt        add recipient carol@example.test
    del-rcpt        delete recipient bob@example.test
    change-from     change the sender to bounces@example.test
    quarantine      quarantine the message
    discard         discard the message
    sleep           sleep 5 s before answering (for time-outs)
  A connection to the submissions role (port 465) is rejected with a custom
  reply (given at RCPT TO); a client saying HELO refused.test is rejected (given at RCPT TO); a
  recipient whose local part is "refused" is rejected with a custom
  reply (550 5.7.1 "recipient refused by the test milter"); a sender
  "tempfail@..." gets TEMPFAIL at MAIL FROM.
"""

import sys
import time

import Milter

STAGE_MACROS = {
    "connect": ["j", "{daemon_name}", "{client_addr}", "{client_port}", "{client_name}", "v"],
    "hello": ["{tls_version}", "{cipher}"],
    "envfrom": ["{mail_addr}", "{auth_authen}", "{mail_host}"],
    "envrcpt": ["{rcpt_addr}", "{rcpt_host}"],
    "eom": ["i"],
}


class Actions(Milter.Base):
    def __init__(self):
        self.seen = {}
        self.actions = []
        self.headers = []

    def _note(self, stage):
        for name in STAGE_MACROS[stage]:
            value = self.getsymval(name)
            if value:
                self.seen[name] = value

    def connect(self, hostname, family, hostaddr):
        self._note("connect")
        self.seen["hostname"] = hostname
        if self.getsymval("{daemon_name}") == "submissions":
            self.setreply("554", "5.7.1", "not on port 465, says the test milter")
            return Milter.REJECT
        return Milter.CONTINUE

    def hello(self, name):
        self._note("hello")
        self.seen["helo"] = name
        if name == "refused.test":
            return Milter.REJECT
        return Milter.CONTINUE

    def envfrom(self, sender, *params):
        self.actions, self.headers = [], []
        self._note("envfrom")
        self.seen["mail_args"] = " ".join((sender, *params))
        if sender.lower().startswith("<tempfail@"):
            return Milter.TEMPFAIL
        return Milter.CONTINUE

    def envrcpt(self, recipient, *params):
        self._note("envrcpt")
        if recipient.lower().startswith("<refused@"):
            self.setreply("550", "5.7.1", "recipient refused by the test milter")
            return Milter.REJECT
        return Milter.CONTINUE

    def header(self, name, value):
        self.headers.append((name, value))
        if name.lower() == "x-test-action":
            self.actions += [a.strip() for a in value.split(",")]
        return Milter.CONTINUE

    def eom(self):
        self._note("eom")
        actions = self.actions
        if "sleep" in actions:
            time.sleep(5)
        if "macros" in actions:
            seen = "; ".join(f"{k}={v}" for k, v in sorted(self.seen.items()))
            self.addheader("X-Macros", seen)
            self.addheader("X-Header-Count", str(len(self.headers)))
        if "insert-header" in actions:
            self.addheader("X-Inserted-Top", "at index 0", 0)
            self.addheader("X-Inserted-2", "at index 2", 2)
        if "change-header" in actions:
            self.chgheader("Subject", 1, "changed by the milter")
            self.chgheader("X-Remove-Me", 2, "")
        if "add-header" in actions:
            self.addheader("X-Added", "folded\n\tover two lines")
        if "replace-body" in actions:
            self.replacebody(b"The milter wrote\r\n")
            self.replacebody(b"this new body.\r\n")
        if "add-rcpt" in actions:
            self.addrcpt("<carol@example.test>")
        if "del-rcpt" in actions:
            self.delrcpt("<bob@example.test>")
        if "change-from" in actions:
            self.chgfrom("<bounces@example.test>")
        if "quarantine" in actions:
            self.quarantine("held by the test milter")
        if "discard" in actions:
            return Milter.DISCARD
        return Milter.ACCEPT


def main():
    Milter.factory = Actions
    Milter.set_flags(
        Milter.ADDHDRS
        | Milter.CHGHDRS
        | Milter.CHGBODY
        | Milter.ADDRCPT
        | Milter.DELRCPT
        | Milter.CHGFROM
        | Milter.QUARANTINE
    )
    Milter.runmilter("actions", sys.argv[1], 60)


if __name__ == "__main__":
    main()
