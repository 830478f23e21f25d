"""Credentials out of sight: storage URLs and free text with every form of a password hidden."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

HIDDEN = "***"
PASSWORD_KEYS = ("password", "passwd", "pwd", "sslpassword")
USERINFO = re.compile(r"^(?P<head>[\w+]+://[^:/]*:)(?P<password>[^@]*)@")
"""A URL's user info as SQLAlchemy reads it (`sqlalchemy.engine.url.make_url`): the user name
runs to the first ':' or '/', the password from there to the next '@', so a password may hold
'/', '?' or '#', which end the host part for `urllib.parse.urlsplit`."""


def mask(url: str) -> str:
    """`url` with its password hidden: in the user info (`user:pw@host`) and in query
    parameters (`?password=pw`), percent-encoded or not. Safe for output, logs and reports."""
    found = USERINFO.match(url)
    if found is not None:
        url = found["head"] + HIDDEN + url[found.end("password") :]
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:{HIDDEN}@{host}"
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(k.lower() in PASSWORD_KEYS for k, _ in pairs):
        hidden = [(k, HIDDEN if k.lower() in PASSWORD_KEYS else v) for k, v in pairs]
        query = urlencode(hidden, safe="*", quote_via=quote)
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    if netloc == parts.netloc:
        # Only the query changes: kept as written before it (`urlunsplit` would turn
        # `sqlite:////tmp/a.db`, whose host is empty, into `sqlite://tmp/a.db`).
        fragment = f"#{parts.fragment}" if parts.fragment else ""
        return f"{url.split('?', 1)[0]}?{query}{fragment}"
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def passwords(url: str) -> set[str]:
    """Every spelling of `url`'s passwords that could appear in text: as written in the URL,
    percent-decoded, and percent-encoded."""
    parts = urlsplit(url)
    found = set()
    as_sqlalchemy_reads_it = USERINFO.match(url)
    if as_sqlalchemy_reads_it is not None:
        found.add(as_sqlalchemy_reads_it["password"])
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        if ":" in userinfo:
            found.add(userinfo.split(":", 1)[1])
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() in PASSWORD_KEYS:
            found.add(value)
    spellings = set()
    for password in found - {""}:
        spellings |= {password, unquote(password), quote(unquote(password), safe="")}
    return spellings - {""}


def redact(text: str, url: str | None) -> str:
    """`text` with `url` masked and any spelling of its password hidden wherever it appears."""
    if not url:
        return text
    text = text.replace(url, mask(url))
    for password in sorted(passwords(url), key=len, reverse=True):
        text = re.sub(_standing_alone(password), HIDDEN, text)
    return text


def _standing_alone(password: str) -> str:
    """A pattern for `password` where it is not part of a longer word: a one-letter password
    `p` is hidden in `password "p"`, not in `pymysql`."""
    before = r"(?<!\w)" if re.match(r"\w", password[0]) else ""
    after = r"(?!\w)" if re.match(r"\w", password[-1]) else ""
    return before + re.escape(password) + after
