"""The speed targets of issues 16, 13 and 17, checked against one suite run's table (bench/suite.py).

`check(rows)` returns one line per target: the figure measured in this run,
the bound, and "met" or "NOT met" ("not measured" when the run left that part
out). The ratios are the table's: medians of same-round ratios. The suite
prints these lines under its table, so `make bench` says in one place
whether the targets hold; docs/benchmarks.md keeps the runs.
"""

from __future__ import annotations

from collections.abc import Callable

Row = dict
Find = Callable[[str, str], Row | None]


def _finder(rows: list[Row]) -> Find:
    def find(scenario: str, metric: str) -> Row | None:
        for row in rows:
            if row["scenario"].startswith(scenario) and row["metric"].startswith(metric):
                return row
        return None

    return find


def _line(what: str, value: float | None, bound: str, ok: Callable[[float], bool]) -> str:
    if value is None:
        return f"  {what}: not measured (bound {bound})"
    verdict = "met" if ok(value) else "NOT met"
    return f"  {what}: {value:.2f} (bound {bound}) {verdict}"


def _ratio(row: Row | None, col: str) -> float | None:
    """Column `col` of `row`, None when the row was not measured."""
    return None if row is None else row.get(col)


def check(rows: list[Row]) -> list[str]:
    find = _finder(rows)
    out = ["# issue 16 targets (this run)"]
    for scenario, bound in (
        ("inbound 1 KB, 1 session", 1.5),
        ("inbound 1 KB, 50 sessions", 2.0),
        ("inbound 100 KB, 10 sessions", 1.5),
    ):
        value = _ratio(find(scenario, "delivered"), "pg/pf")
        out.append(
            _line(
                f"{scenario}: pigeon/Postfix delivered",
                value,
                f">= {bound}",
                lambda v, b=bound: v >= b,
            )
        )
    value = _ratio(find("inbound 1 KB, 50 sessions", "accept"), "pg/sink")
    out.append(
        _line(
            "inbound 1 KB, 50 sessions: pigeon/smtp-sink accepted",
            value,
            ">= 0.25",
            lambda v: v >= 0.25,
        )
    )
    value = _ratio(find("relay 5 KB, 20 sessions", "relay"), "pg/pf")
    out.append(
        _line(
            "relay to smtp-sink, 20 sessions: pigeon/Postfix", value, ">= 1.5", lambda v: v >= 1.5
        )
    )
    cpu = [
        row["cpu_pigeon"] / row["cpu_postfix"]
        for row in rows
        if row["scenario"].startswith("inbound")
        and row.get("cpu_pigeon")
        and row.get("cpu_postfix")
    ]
    out.append(
        _line(
            "CPU per delivered message, pigeon/Postfix (worst inbound scenario)",
            max(cpu) if cpu else None,
            "<= 0.5",
            lambda v: v <= 0.5,
        )
    )
    start = find("queue rate, 1,000,000 deferred", "start-up")
    out.append(
        _line(
            "start-up with 1,000,000 deferred: ready to accept, s",
            _ratio(start, "pigeon"),
            "< 5",
            lambda v: v < 5,
        )
    )
    rate = find("queue rate, 1,000,000 deferred", "accept")
    ratio = None
    if rate is not None and "x of empty" in rate["metric"]:
        ratio = float(rate["metric"].split("(")[1].split("x")[0])
    out.append(
        _line(
            "accept rate with 1,000,000 deferred / empty queue",
            ratio,
            ">= 0.90",
            lambda v: v >= 0.9,
        )
    )
    p99 = find("latency", "accept→Maildir ms, p99")
    out.append(
        _line(
            "p99 accept→Maildir at half load, ms",
            _ratio(p99, "pigeon"),
            "< 50",
            lambda v: v < 50,
        )
    )
    idle = find("", "peak RSS MiB")
    sessions = idle["scenario"].split()[0] if idle else "?"
    out.append(
        _line(
            f"{sessions} idle sessions: pigeon peak RSS MiB (the bound is for 10,000: make bench-full)",
            _ratio(idle, "pigeon"),
            "< 300",
            lambda v: v < 300,
        )
    )
    auth = find("inbound, SPF+DKIM+DMARC enforced vs off", "on/off")
    out.append("# issue 13 target (this run)")
    out.append(
        _line(
            "inbound accept rate, SPF+DKIM+DMARC on / off",
            _ratio(auth, "pigeon"),
            ">= 0.80",
            lambda v: v >= 0.8,
        )
    )
    one = find("cluster relay 5 KB, 20 sessions, PostgreSQL, 1 node", "delivered")
    out.append("# issue 17 target (this run)")
    out.append(
        _line(
            "relay, one node on PostgreSQL / the embedded store, delivered",
            _ratio(one, "ratio"),
            ">= 0.70",
            lambda v: v >= 0.7,
        )
    )
    return out
