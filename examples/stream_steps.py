"""Stream a plan live: print each strategy as the planner picks it and each step as the reasoner writes it.

    python examples/stream_steps.py "Compute ((23+45)*3)-17."
"""

import sys

from rsim_graph.graph import build_graph
from rsim_graph.loading import load_planner, load_reasoner
from rsim_graph.strategies import StrategyLibrary

question = sys.argv[1] if len(sys.argv) > 1 else "Compute ((23+45)*3)-17."
library = StrategyLibrary.default()
graph = build_graph(load_planner(None, library), load_reasoner(), library, max_steps=10, max_step_tokens=96)
for event in graph.stream({"question": question}, stream_mode="custom"):
    if event["event"] == "strategy":
        print(f"-> {event['strategy']}{' (forced)' if event['forced'] else ''}")
    elif event["event"] == "step":
        print(f"   {event['text']}")
    else:
        print(f"answer: {event['answer']} ({event['stop_reason']})")
