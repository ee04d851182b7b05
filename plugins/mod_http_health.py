"""GET /health on the web listener: 200 when the directory database answers, 503 otherwise.

For load balancers and monitoring; it reveals nothing but whether the database is reachable.
"""

from __future__ import annotations

import json

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET


class Health(Resource):
    isLeaf = True

    def __init__(self, module) -> None:
        super().__init__()
        self.module = module

    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")

        gone = []
        request.notifyFinish().addErrback(gone.append)

        def answer(ok: bool) -> None:
            if gone:  # the client hung up while the database answered
                return
            request.setResponseCode(200 if ok else 503)
            request.write(json.dumps({"status": "ok" if ok else "unavailable"}).encode() + b"\n")
            request.finish()

        def failed(failure) -> None:
            self.module.log.failure("Health check could not reach the directory", failure)
            answer(False)

        self.module.directory.ping().addCallbacks(answer, failed)
        return NOT_DONE_YET

    def render_HEAD(self, request):
        return self.render_GET(request)


def load(module) -> None:
    module.add_item("http-path", ("health", Health(module)))
