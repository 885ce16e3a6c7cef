"""`python -m server`: serve rSIM over the OpenAI chat-completions API.

With no flags it serves the bundled tiny ArithWorld planner and reasoner on 127.0.0.1:8000, offline.
Every flag is also an environment variable (`--port 8001` or `RSIM_PORT=8001`). Examples:

    python -m server
    python -m server --planner outputs/marl/planner --reasoner Qwen/Qwen2.5-0.5B-Instruct
    python -m server --reasoner_base_url http://localhost:8001/v1 --reasoner_model Qwen/Qwen2.5-7B-Instruct --api_key sk-1 --api_key sk-2
"""

from __future__ import annotations

import logging
import sys

from pydantic import ValidationError
from pydantic_settings import CliApp, SettingsError

from rsim_graph.config import RENAMED
from server.settings import ServerSettings

# Seconds that in-flight requests get to finish after SIGTERM/Ctrl-C before they are cancelled.
SHUTDOWN_GRACE_S = 30


def parse(argv: list[str] | None) -> ServerSettings:
    argv = argv if argv is not None else sys.argv[1:]
    for arg in argv:
        flag = arg.split("=")[0]
        if flag in RENAMED and flag != "--api_key":  # here --api_key is the clients' keys
            raise SettingsError(f"{flag} is renamed; pass {RENAMED[flag]}")
    return CliApp.run(ServerSettings, cli_args=argv, cli_settings_source=None)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = parse(argv)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        print(f"error: {('--' + where + ': ') if where else ''}{err['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2
    except SettingsError as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    import uvicorn

    from server.app import create_app
    from server.http import timed_h11

    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, timeout_graceful_shutdown=SHUTDOWN_GRACE_S, log_level="info",
        http=timed_h11(settings.read_timeout),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
