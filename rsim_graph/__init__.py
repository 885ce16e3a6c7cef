"""rSIM: reinforced strategy injection (arXiv 2512.08300) as a LangGraph graph.

    from rsim_graph import build_graph, run_batch, StrategyLibrary
"""

from rsim_graph.graph import build_graph, run_batch
from rsim_graph.strategies import Strategy, StrategyLibrary, load_strategies

__all__ = ["Strategy", "StrategyLibrary", "build_graph", "load_strategies", "run_batch"]
