"""A LangChain agent whose model is rSIM: every reply is a planner-guided chain of thought.

    python examples/langchain_agent.py "Compute (51+41)*4."
"""

import sys

from langchain.agents import create_agent
from langchain_core.messages import HumanMessage

from rsim_graph import RSIMChatModel

question = sys.argv[1] if len(sys.argv) > 1 else "Compute (51+41)*4."
agent = create_agent(model=RSIMChatModel.load(max_steps=10), tools=[], system_prompt="Solve the arithmetic problem.")
result = agent.invoke({"messages": [HumanMessage(question)]})
reply = result["messages"][-1]
for step in reply.response_metadata["rsim"]["steps"]:
    print(f"[{step['strategy']}] {step['text']}")
print(f"answer: {reply.response_metadata['rsim']['answer']}")
