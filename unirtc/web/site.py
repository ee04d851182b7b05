"""The HTTP(S) listener's site: plugins mount resources at paths via ``http-path`` items."""

from __future__ import annotations

from twisted.web.resource import NoResource, Resource
from twisted.web.server import Site

from unirtc.plugin import Items


class _Root(Resource):
    def getChild(self, path: bytes, request) -> Resource:
        return NoResource()


def make_site(items: Items) -> Site:
    """A Site whose top-level children follow the ``http-path`` items, ``(name, resource)`` pairs."""
    root = _Root()

    def added(item: tuple[str, Resource]) -> None:
        root.putChild(item[0].encode("ascii"), item[1])

    def removed(item: tuple[str, Resource]) -> None:
        root.delEntity(item[0].encode("ascii"))

    items.watch("http-path", added, removed)
    site = Site(root)
    site.displayTracebacks = False
    return site
