"""A real, small authoritative DNS server on loopback, for tests (UDP and TCP).

    ZONE = '''
    @        MX 10 mx1
    @        MX 20 mx2.other.test.
    mx1      A 127.0.0.2
    mx1      AAAA ::1
    '''
    with DnsServer(zones={"example.test": ZONE}, servfail={"broken.test"},
                   timeout={"slow.test"}) as dns:
        resolver.nameservers = [Do53Nameserver("127.0.0.1", dns.port)]

Contract:
  * Serves the zones given as zone-file text (RFC 1035 §5; parsed by
    `dns.zone.from_text`, relative names relative to the zone's origin; no
    SOA/NS needed; TTLs default to 300). One port, both UDP and TCP (RFC 1035 §4.2; TCP with the
    two-octet length prefix), on 127.0.0.1 by default, port 0 = a free port,
    read back from `.port`.
  * Answers, for a query (name, type):
      - name in `timeout` (or below one of them): no answer at all;
      - name in `servfail` (or below): rcode SERVFAIL;
      - name in no zone: NXDOMAIN (we pretend to be the whole DNS);
      - name absent from its zone: NXDOMAIN, with the SOA if the zone has one,
        unless it has names below it (empty non-terminal: NOERROR, no data);
      - name has the type: NOERROR with the rrset, AA set;
      - name has a CNAME: the CNAME, followed while the target is in our
        zones (at most 8 links);
      - otherwise NOERROR with no answer ("no data").
    Wildcards, DNSSEC, delegation and zone transfers are not supported.
  * Every query is recorded in `.queries` as (name, type text, "udp"/"tcp")
    so tests can assert what was (not) asked.
  * UDP answers larger than 512 octets (or the EDNS payload size) are sent
    truncated (TC) so the client retries over TCP.
  * Threads: one UDP and one TCP server thread (daemon), stopped and joined
    by `close()` / leaving the `with` block. Never used by production code.

Standalone: `python -m pigeon.testing.dnsserver --zone example.test=FILE
--port 5353` serves until interrupted (see `main`).
"""

from __future__ import annotations

import argparse
import socket
import socketserver
import struct
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

__all__ = ["DnsServer", "load_zone", "main"]

MAX_CNAME_CHAIN = 8


def load_zone(origin: str, text: str) -> dns.zone.Zone:
    """Zone-file text (see the module contract) as a dnspython zone, names absolute."""
    name = dns.name.from_text(origin)
    # "$TTL 300" first, so records may omit the TTL (a $TTL in the text wins).
    return dns.zone.from_text(
        "$TTL 300\n" + text, origin=name, relativize=False, check_origin=False
    )


class DnsServer:
    """See the module contract. Use as a context manager or call start()/close()."""

    def __init__(
        self,
        zones: Mapping[str, str] | None = None,
        *,
        servfail: Iterable[str] = (),
        timeout: Iterable[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.zones: dict[dns.name.Name, dns.zone.Zone] = {}
        for origin, text in (zones or {}).items():
            self.zones[dns.name.from_text(origin)] = load_zone(origin, text)
        self.servfail = {dns.name.from_text(n) for n in servfail}
        self.timeout = {dns.name.from_text(n) for n in timeout}
        self.host = host
        self.port = port
        self.queries: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []
        self.closing = threading.Event()

    # --- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> DnsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Bind UDP and TCP on one port (retrying if a free UDP port is taken on TCP)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        for _ in range(20):
            udp = _make_server(_UdpServer, family, (self.host, self.port), _UdpHandler, self)
            port = int(udp.server_address[1])  # type: ignore[index]  # (host, port) for INET
            try:
                tcp = _make_server(_TcpServer, family, (self.host, port), _TcpHandler, self)
            except OSError:
                udp.server_close()
                if self.port:
                    raise
                continue
            break
        else:
            raise OSError("no port free for both UDP and TCP")
        self.port = port
        self._servers = [udp, tcp]
        for server in self._servers:
            t = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"dnsserver-{port}",
                daemon=True,
            )
            t.start()
            self._threads.append(t)

    def close(self) -> None:
        self.closing.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for t in self._threads:
            t.join(timeout=5)
        self._servers, self._threads = [], []

    # --- answering ---------------------------------------------------------------------

    def answer(self, wire: bytes, transport: str) -> dns.message.Message | None:
        """The response to one query in wire form, or None to stay silent."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if not query.question:
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        qname, qtype = question.name, question.rdtype
        with self._lock:
            self.queries.append(
                (
                    qname.to_text(omit_final_dot=True).lower(),
                    dns.rdatatype.to_text(qtype),
                    transport,
                )
            )
        if _under(qname, self.timeout):
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        if _under(qname, self.servfail):
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        self._resolve(qname, qtype, response, 0)
        return response

    def _zone_for(self, name: dns.name.Name) -> dns.zone.Zone | None:
        best = None
        for origin, zone in self.zones.items():
            if name.is_subdomain(origin) and (
                best is None or len(origin) > len(best.origin or dns.name.root)
            ):
                best = zone
        return best

    def _resolve(
        self,
        qname: dns.name.Name,
        qtype: dns.rdatatype.RdataType,
        response: dns.message.Message,
        depth: int,
    ) -> None:
        zone = self._zone_for(qname)
        if zone is None:
            if depth == 0:
                response.set_rcode(dns.rcode.NXDOMAIN)
            return
        response.flags |= dns.flags.AA
        node = zone.get_node(qname)
        if node is None:
            if not any(n != qname and n.is_subdomain(qname) for n in zone.nodes):
                response.set_rcode(dns.rcode.NXDOMAIN)
            self._add_soa(zone, response)
            return
        rdataset = node.get_rdataset(dns.rdataclass.IN, qtype)
        if rdataset is not None:
            response.answer.append(_rrset(qname, rdataset))
            return
        cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
        if cname is not None and qtype != dns.rdatatype.CNAME:
            response.answer.append(_rrset(qname, cname))
            if depth < MAX_CNAME_CHAIN:
                self._resolve(cname[0].target, qtype, response, depth + 1)
            return
        self._add_soa(zone, response)

    @staticmethod
    def _add_soa(zone: dns.zone.Zone, response: dns.message.Message) -> None:
        if zone.origin is None:
            return
        soa = zone.get_rdataset(zone.origin, dns.rdatatype.SOA)
        if soa is not None:
            response.authority.append(_rrset(zone.origin, soa))


def _under(name: dns.name.Name, names: set[dns.name.Name]) -> bool:
    return any(name.is_subdomain(n) for n in names)


def _rrset(name: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> dns.rrset.RRset:
    rrset = dns.rrset.RRset(name, rdataset.rdclass, rdataset.rdtype)
    rrset.update(rdataset)
    return rrset


# --- socket plumbing ----------------------------------------------------------------------


def _make_server(
    cls: type, family: int, address: tuple[str, int], handler: type, owner: DnsServer
) -> socketserver.BaseServer:
    server = cls(address, handler, bind_and_activate=False)
    server.socket.close()  # made for AF_INET; replace
    server.address_family = family
    server.socket = socket.socket(family, server.socket_type)
    server.dns = owner
    try:
        server.server_bind()
        server.server_activate()
    except OSError:
        server.server_close()
        raise
    return server


class _UdpServer(socketserver.ThreadingUDPServer):
    daemon_threads = True
    allow_reuse_address = False


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class _UdpHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        response = self.server.dns.answer(data, "udp")  # type: ignore[attr-defined]
        if response is None:
            return
        try:
            query = dns.message.from_wire(data)
            limit = max(512, query.payload) if query.edns >= 0 else 512
        except dns.exception.DNSException:
            limit = 512
        try:
            wire = response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer, response.authority, response.additional = [], [], []
            response.flags |= dns.flags.TC
            wire = response.to_wire()
        sock.sendto(wire, self.client_address)


class _TcpHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(1.0)
        while True:
            try:
                head = _recv_exact(sock, 2)
                if head is None:
                    return
                body = _recv_exact(sock, struct.unpack("!H", head)[0])
                if body is None:
                    return
            except TimeoutError:
                if self.server.dns.closing.is_set():  # type: ignore[attr-defined]
                    return
                continue
            except OSError:
                return
            response = self.server.dns.answer(body, "tcp")  # type: ignore[attr-defined]
            if response is None:
                continue  # "timeout": read on, never answer
            wire = response.to_wire()
            sock.sendall(struct.pack("!H", len(wire)) + wire)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


# --- standalone use -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """`python -m pigeon.testing.dnsserver --zone [ORIGIN=]FILE... [--port N]`.

    Without ORIGIN=, the origin is the file name minus a ".zone" suffix.
    Try it: `dig @127.0.0.1 -p N example.test MX`.
    """
    parser = argparse.ArgumentParser(
        prog="python -m pigeon.testing.dnsserver",
        description="Serve zone files on loopback (tests only).",
    )
    parser.add_argument("--zone", action="append", default=[], metavar="[ORIGIN=]FILE")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5353)
    parser.add_argument("--servfail", action="append", default=[], metavar="NAME")
    parser.add_argument("--timeout", action="append", default=[], metavar="NAME")
    args = parser.parse_args(argv)
    zones: dict[str, str] = {}
    for item in args.zone:
        origin, eq, file = item.partition("=")
        if not eq:
            file = item
            origin = Path(file).name.removesuffix(".zone")
        zones[origin] = Path(file).read_text(encoding="utf-8")
    server = DnsServer(
        zones, servfail=args.servfail, timeout=args.timeout, host=args.host, port=args.port
    )
    server.start()
    print(
        f"serving {', '.join(zones) or 'no zones'} on {args.host} port {server.port} "
        f"(UDP and TCP); Ctrl-C to stop",
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
