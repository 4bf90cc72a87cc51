"""The ceiling of the benchmark: a raw ASGI app that reads the request and answers a constant
small JSON body, served by uvicorn exactly as `python -m proxy serve` serves the proxy."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# As long as the evaluate answer of a one-flag project.
BODY = b'{"flags":{"ok":{"value":true,"rule_id":null}}}'
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
    ],
}
RESPONSE = {"type": "http.response.body", "body": BODY}


async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:  # read the body, as the proxy does
        more = (await receive()).get("more_body", False)
    await send(START)
    await send(RESPONSE)


def main() -> None:
    import uvicorn

    cli = argparse.ArgumentParser(description=__doc__)
    cli.add_argument("--host", default="127.0.0.1")
    cli.add_argument("--port", type=int, default=8090)
    args = cli.parse_args()
    # The settings of proxy/__main__.py's `serve`, one worker.
    uvicorn.run(
        "loadtests.baseline:app",
        host=args.host,
        port=args.port,
        workers=1,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
