"""rSIM as one node of your own LangGraph graph: a shopping bill is turned into arithmetic, solved by
the rSIM subgraph, and the answer checked by a final node.

    python examples/subgraph.py 46 2 1

The arguments are apples, price each, and a coupon. The bundled tiny models know two-digit numbers,
one-digit factors and problems of two or more operations.
"""

import sys
from typing import TypedDict

from langgraph.graph import END, START, StateGraph

from rsim_graph import RuntimeConfig, load_runtime


class Shop(TypedDict, total=False):
    apples: int
    price: int
    coupon: int
    question: str  # shared with the rSIM subgraph: its input ...
    answer: str  # ... and its output
    verdict: str


def pose(state: Shop) -> dict:
    return {"question": f"Compute ({state['apples']}*{state['price']})-{state['coupon']}."}


def check(state: Shop) -> dict:
    ok = state["answer"] == str(state["apples"] * state["price"] - state["coupon"])
    return {"verdict": "correct" if ok else "wrong"}


rsim = load_runtime(RuntimeConfig(max_reasoning_steps=10)).graph  # the bundled tiny planner and reasoner
shop = StateGraph(Shop)
shop.add_node("pose", pose)
shop.add_node("rsim", rsim)  # the compiled rSIM graph, used as a subgraph node
shop.add_node("check", check)
shop.add_edge(START, "pose")
shop.add_edge("pose", "rsim")
shop.add_edge("rsim", "check")
shop.add_edge("check", END)

apples, price, coupon = (int(a) for a in sys.argv[1:4]) if len(sys.argv) > 3 else (46, 2, 1)
out = shop.compile().invoke({"apples": apples, "price": price, "coupon": coupon})
print(f"{out['question']} -> {out['answer']} ({out['verdict']})")
