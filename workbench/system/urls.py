"""URLs as wb records and prints them: without the user:password@ part and the ?query (where tokens go).

A request still goes to the full URL the user gave; what is written anywhere (run.json, the index, the judge
cache's keys, MLflow params, messages, the command line) is its public form. `redact_urls` does the same to every
URL inside a text (a third-party line on stderr, an error message); `redact_record` to every string of a record.
"""

import re

# scheme://, then up to whitespace, a quote or an angle bracket (a URL in a message, a JSON string or a shell word)
URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>`]+")


def _split(url: str) -> tuple[str, str, str, str, str]:
    """scheme, userinfo, host[:port], path, fragment (the query dropped), without normalizing anything."""
    scheme, _, rest = url.partition("://")
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, _, host = authority.rpartition("@")
    path, _, fragment = tail.partition("#")
    return scheme, userinfo, host, path.partition("?")[0], fragment


def public_url(url: str) -> str:
    """The URL as a record keeps it: scheme://host[:port]/path, no credentials, query or fragment."""
    if "://" not in url:
        return url
    scheme, _, host, path, _ = _split(url)
    return f"{scheme}://{host}{path}"


def url_under(base_url: str, path: str) -> str:
    """`path` under the API at `base_url`, the base's query (a ?token=) kept after it: what a request goes to."""
    base, mark, query = base_url.partition("#")[0].partition("?")
    return f"{base.rstrip('/')}/{path}{mark}{query}"


def _public_in_text(match: re.Match) -> str:
    scheme, _, host, path, fragment = _split(match.group(0))
    # the fragment stays: never sent to a server, it is where a link points in a web app (MLflow's run pages)
    return f"{scheme}://{host}{path}" + (f"#{fragment}" if fragment else "")


def redact_urls(text: str) -> str:
    """Every URL in `text` without credentials or query string."""
    return URL_IN_TEXT.sub(_public_in_text, text) if "://" in text else text


def redact_record(obj):
    """Redact the URLs in every string of a JSON-like record (dicts and lists changed in place); returns it."""
    if isinstance(obj, str):
        return redact_urls(obj)
    if isinstance(obj, dict):
        for key, value in obj.items():
            obj[key] = redact_record(value)
    elif isinstance(obj, list):
        obj[:] = [redact_record(value) for value in obj]
    return obj
