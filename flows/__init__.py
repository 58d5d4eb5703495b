"""The flow engine and its YAML flows.

Admins write flows in YAML (see ``flows/demo/`` and README "Writing flows");
:func:`load_flows` validates them with file:line errors and
:class:`FlowEngine` runs them one customer turn at a time.
"""

from .engine import FlowEngine, HandoffRequest, Reply, TurnInput, TurnResult
from .loader import FlowSet, load_flows
from .matcher import IntentMatcher, LexicalMatcher

__all__ = ["FlowEngine", "FlowSet", "HandoffRequest", "IntentMatcher", "LexicalMatcher", "Reply",
           "TurnInput", "TurnResult", "load_flows"]
