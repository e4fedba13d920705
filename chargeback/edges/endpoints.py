"""Endpoint rules shared by every edge: what counts as a local stand-in, and https elsewhere.

An endpoint on ``localhost``/``127.0.0.1`` (Azurite, the local Log Analytics server) may be plain
http and needs no Azure credential; any other endpoint must be https with a real credential.
``Settings.validate`` applies ``check_endpoint`` to every configured endpoint; the Azure clients use
``is_local_endpoint`` to pick the local stand-in credential and to relax the SDKs' https check.
"""

from __future__ import annotations

from urllib.parse import urlparse

from chargeback.errors import ConfigError

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def is_local_endpoint(url: str) -> bool:
    """True for the local stand-ins (Azurite, the local Log Analytics server): no credential needed."""
    return (urlparse(url).hostname or "").lower() in LOCAL_HOSTS


def check_endpoint(name: str, url: str) -> str:
    """An endpoint must be https, unless it points at a local stand-in; returns it without a trailing /."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"{name}={url!r} is not an http(s) URL")
    if parsed.scheme == "http" and not is_local_endpoint(url):
        raise ConfigError(f"{name}={url!r} must use https (plain http is only for localhost stand-ins)")
    return url.rstrip("/")
