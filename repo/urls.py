"""PostgreSQL URLs in both of libpq's spellings of several hosts.

libpq (and so psycopg2) accepts a list of hosts in the URL's authority,
``postgresql://helpline@db1:5432,db2:5432/helpline?target_session_attrs=read-write``, or as
query parameters, ``postgresql://helpline@/helpline?host=db1,db2&port=5432,5432``. It tries
the hosts in order and, with ``target_session_attrs=read-write`` (or ``primary``), keeps the
first that accepts writes: after a failover, new connections find the promoted standby.
Python's ``urlsplit().port`` cannot read the first spelling, and neither can yoyo, so every URL
is brought to the second, which both read, before anything parses it.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

_AUTHORITY = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<rest>.*)$"
)


class MalformedDatabaseUrl(ValueError):
    """A database URL that libpq could not use either; the message says what is wrong."""


def hosts_in_query(url: str) -> str:
    """``url`` with a list of hosts moved from its authority to ``host=`` and ``port=``
    parameters; a URL with one host (or none) comes back unchanged."""
    match = _AUTHORITY.match(url)
    if match is None or "," not in match["authority"]:
        return url
    userinfo, at, hostlist = match["authority"].rpartition("@")
    hosts, ports = [], []
    for entry in hostlist.split(","):
        host, port = _host_and_port(entry)
        hosts.append(host)
        ports.append(port)
    params = [f"host={quote(','.join(hosts), safe=',:')}"]
    if any(ports):  # an empty entry is libpq's default for that host (PGPORT, else 5432)
        params.append(f"port={','.join(ports)}")
    path, _, query = match["rest"].partition("?")
    query = "&".join(p for p in (*params, query) if p)
    return f"{match['scheme']}://{userinfo}{at}{path}?{query}"


def _host_and_port(entry: str) -> tuple[str, str]:
    if not entry:
        raise MalformedDatabaseUrl("an empty host in the list of hosts")
    if entry.startswith("["):  # an IPv6 address: [::1]:5432
        address, _, after = entry[1:].partition("]")
        port = after.removeprefix(":")
        host = address
    else:
        host, _, port = entry.partition(":")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise MalformedDatabaseUrl(f"port {port!r} of host {host!r} is not a port number")
    return unquote(host), port  # percent-encoded in a URL (a socket path, a zone id)
