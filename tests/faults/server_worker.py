"""The model server process test_kill_server.py kills: ModelServer + uvicorn, as ``serve`` runs them.

    python -m tests.faults.server_worker SERVING_DIR PORT

It polls the serving directory every 10 ms. The server logs ``loading seq N`` to stderr when a reload
of a newer version starts and ``serving seq N`` when it completes, so the test can aim its kill -9 inside
the reload and tell afterwards whether it landed before the reload finished.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import uvicorn

from tiktok_pipelines.serving.server import ModelServer, create_app


def main(serving: Path, port: int) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
    logging.getLogger("uvicorn").setLevel(logging.WARNING)
    server = ModelServer(serving, reload_interval_s=0.01)
    server.start()
    uvicorn.run(create_app(server), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
