"""Talk to `python -m server` with the OpenAI SDK: stream the steps live, then read the strategy trace.

    python -m server &                       # serves the bundled models on 127.0.0.1:8000
    python examples/openai_client.py "Compute (12+7)*3."

Set RSIM_BASE_URL to reach another server.
"""

import os
import sys

from openai import OpenAI

question = sys.argv[1] if len(sys.argv) > 1 else "Compute (12+7)*3."
client = OpenAI(base_url=os.environ.get("RSIM_BASE_URL", "http://127.0.0.1:8000/v1"), api_key=os.environ.get("RSIM_API_KEY", "none"))

# Streaming: each content delta is one reasoning step; `delta.rsim` says which strategy the planner injected.
stream = client.chat.completions.create(model="rsim", messages=[{"role": "user", "content": question}], stream=True)
for chunk in stream:
    delta = chunk.choices[0].delta
    if delta.content:
        print(f"[{delta.model_extra['rsim']['strategy']}] {delta.content.strip()}")

# A/B: the same reasoner without strategy injection (an rSIM extension field, sent through extra_body).
plain = client.chat.completions.create(
    model="rsim", messages=[{"role": "user", "content": question}], extra_body={"strategy_injection": False}
)
guided = client.chat.completions.create(model="rsim", messages=[{"role": "user", "content": question}])
print(f"with strategies: {guided.choices[0].message.model_extra['rsim']['answer']}")
print(f"without:         {plain.choices[0].message.model_extra['rsim']['answer']}")
