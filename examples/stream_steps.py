"""Stream a plan live: print each strategy as the planner picks it and each step as the reasoner writes it.

    python examples/stream_steps.py "Compute ((23+45)*3)-17."

The events are `rsim_graph.events`: the same ones the server streams and `RSIMChatModel` reads.
"""

import sys

from rsim_graph import Finished, RuntimeConfig, StepWritten, StrategyChosen, load_runtime

question = sys.argv[1] if len(sys.argv) > 1 else "Compute ((23+45)*3)-17."
runtime = load_runtime(RuntimeConfig(max_reasoning_steps=10, max_step_tokens=96, sample_planner=True))
for event in runtime.events(question):
    if isinstance(event, StrategyChosen):
        print(f"-> {event.strategy}{' (forced)' if event.forced else ''}")
    elif isinstance(event, StepWritten):
        print(f"   {event.text}")
    elif isinstance(event, Finished):
        print(f"answer: {event.answer} ({event.stop_reason})")
