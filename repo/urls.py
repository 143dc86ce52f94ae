"""PostgreSQL URLs in both of libpq's spellings of several hosts.

libpq (and so psycopg2) accepts a list of hosts in the URL's authority,
``postgresql://helpline@db1:5432,db2:5432/helpline?target_session_attrs=read-write``, or as
query parameters, ``postgresql://helpline@/helpline?host=db1,db2&port=5432,5432``. It tries
the hosts in order and, with ``target_session_attrs=read-write`` (or ``primary``), keeps the
first that accepts writes: after a failover, new connections find the promoted standby.
Python's ``urlsplit().port`` cannot read the first spelling, and neither can yoyo, so every URL
is brought to the second, which both read, before anything parses it.

Every reader (the pool's psycopg2 keywords, the listener, yoyo) splits a URL with ``urlsplit``,
so ``check_postgres_url`` accepts only URLs it reads as written. Its messages quote no part of
the URL: in a malformed one any part may be a password's (``postgresql://u:S3cret/PW@host/db``
reads as host ``u``, port ``S3cret``).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import quote, unquote, urlsplit

_AUTHORITY = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<rest>.*)$"
)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_PORT = re.compile(r"[0-9]{1,5}")
PERCENT_ENCODE = (
    "percent-encode '/', '?', '#', '@', '[' and ']' in a user name or password (e.g. '/' as %2F)"
)


class MalformedDatabaseUrl(ValueError):
    """A database URL that cannot be read as written; the message says what is wrong without
    quoting any of it."""


def url_scheme(url: str) -> str:
    """A URL's scheme as ``urlsplit`` reads it, lower-cased ('' when it has none), without
    ``urlsplit``'s errors about the rest of it."""
    scheme, colon, _ = url.partition(":")
    return scheme.lower() if colon and _SCHEME.fullmatch(scheme) else ""


def unsupported_scheme(url: str) -> str:
    """Why ``url`` is not a database URL Helpline reads. Its scheme is quoted only when
    ``//`` follows it: in ``user:password@host`` what reads as one is a user name."""
    scheme = url_scheme(url)
    if scheme and url[len(scheme) :].startswith("://"):
        return f"unsupported scheme {scheme!r}"
    return "not a database URL"


def check_postgres_url(url: str) -> None:
    """Raise MalformedDatabaseUrl unless ``url`` (a postgresql:// one) reads as written: its
    user name and password before the host, its hosts and ports (one, or a list: libpq's
    spellings) after it."""
    match = _AUTHORITY.match(url)
    if match is None:
        raise MalformedDatabaseUrl("expected postgresql://user:password@host:port/dbname")
    if "@" in match["rest"]:
        raise MalformedDatabaseUrl(f"an '@' after the host; {PERCENT_ENCODE}")
    userinfo, _, hostlist = match["authority"].rpartition("@")
    if "[" in userinfo or "]" in userinfo:
        raise MalformedDatabaseUrl(f"a '[' or ']' before the host; {PERCENT_ENCODE}")
    entries = hostlist.split(",")
    for position, entry in enumerate(entries, start=1):
        _host_and_port(entry, position if len(entries) > 1 else None)
    try:
        urlsplit(hosts_in_query(url))
    except ValueError:  # what is left: characters Unicode normalization turns into '/', '@'...
        raise MalformedDatabaseUrl(
            "the user name, password or host cannot be read as written; percent-encode "
            "every character but letters, digits and '-', '.', '_', '~'"
        ) from None


def hosts_in_query(url: str) -> str:
    """``url`` with a list of hosts moved from its authority to ``host=`` and ``port=``
    parameters; a URL with one host (or none) comes back unchanged."""
    match = _AUTHORITY.match(url)
    if match is None or "," not in match["authority"]:
        return url
    userinfo, at, hostlist = match["authority"].rpartition("@")
    hosts, ports = [], []
    for position, entry in enumerate(hostlist.split(","), start=1):
        host, port = _host_and_port(entry, position)
        hosts.append(host)
        ports.append(port)
    params = [f"host={quote(','.join(hosts), safe=',:')}"]
    if any(ports):  # an empty entry is libpq's default for that host (PGPORT, else 5432)
        params.append(f"port={','.join(ports)}")
    path, _, query = match["rest"].partition("?")
    query = "&".join(p for p in (*params, query) if p)
    return f"{match['scheme']}://{userinfo}{at}{path}?{query}"


def _host_and_port(entry: str, position: int | None) -> tuple[str, str]:
    """An authority's ``host[:port]`` (``position``: its place in a list of hosts, None when
    it is the only one, which may be empty: libpq's default host)."""
    which = "the host" if position is None else f"host {position} of the list of hosts"
    if not entry and position is not None:
        raise MalformedDatabaseUrl(f"{which} is empty (several hosts: host1:port1,host2:port2)")
    if entry.startswith("["):  # an IPv6 address: [::1]:5432
        address, closed, after = entry[1:].partition("]")
        if not closed or (after and not after.startswith(":")):
            raise MalformedDatabaseUrl(f"{which} opens an IPv6 address but does not close it")
        if not _is_ipv6(unquote(address)):
            raise MalformedDatabaseUrl(f"{which} is not an IPv6 address in brackets")
        host, port = address, after.removeprefix(":")
    else:
        host, _, port = entry.partition(":")
        if "[" in entry or "]" in entry:
            raise MalformedDatabaseUrl(f"{which} has a '[' or ']' outside an IPv6 address")
    if port and not (_PORT.fullmatch(port) and 0 < int(port) < 65536):
        raise MalformedDatabaseUrl(
            f"the port of {which} is not a number from 1 to 65535; {PERCENT_ENCODE}"
        )
    return unquote(host), port  # percent-encoded in a URL (a socket path, a zone id)


def _is_ipv6(address: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(address), ipaddress.IPv6Address)
    except ValueError:
        return False


def splits(url: str) -> bool:
    """Whether ``urlsplit`` reads ``url`` (it refuses an unbalanced '[' or ']')."""
    try:
        urlsplit(url)
    except ValueError:
        return False
    return True
