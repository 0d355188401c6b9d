"""A plugin with a method for every receive stage, each accepting: the cost of
asking user code at every stage (issue 12 item 5, docs/benchmarks.md)."""


class Plugin:
    def connect(self, session):
        return None

    def helo(self, session):
        return None

    def mail(self, session, sender, params):
        return None

    def rcpt(self, session, recipient, params):
        return None

    def data(self, session):
        return None

    def end_of_data(self, session, message):
        return None
