"""The rSIM graph for LangGraph's own server: `langgraph dev` and LangGraph Platform load it through
`langgraph.json`.

    langgraph dev --no-browser --allow-blocking      # the LangGraph API, Studio and SDK on http://127.0.0.1:2024

The runtime is chosen as `python -m server`'s is, by RSIM_* variables (`RSIM_REASONER=smollm2`,
`RSIM_PLANNER=heuristic`, `RSIM_MAX_TOTAL_TOKENS=512`, ...); with none, the bundled tiny models. Threads,
persistence, queueing and streaming are the platform's. `--allow-blocking`: the models load, and the
reasoner's batched decoder runs, in plain (blocking) Python, which langgraph dev's checker refuses otherwise.
"""

from __future__ import annotations

from rsim_graph.loading import load_runtime
from server.settings import ServerSettings

# Loaded once, when the platform imports this module: every thread and run shares the models and their batchers.
graph = load_runtime(ServerSettings(_cli_parse_args=False).runtime()).graph
