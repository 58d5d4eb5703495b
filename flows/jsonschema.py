"""The JSON Schema of a flow file, generated from the pydantic models in :mod:`flows.schema`
(``omnibot schema``; the committed copy is ``docs/flow.schema.json``, kept in sync by a test).

Editors with a YAML language server complete and check flow files against it: put
``# yaml-language-server: $schema=<path or URL of flow.schema.json>`` on a file's first line.
The loader stays the judge: it also checks what a schema cannot (targets, slot names, templates).
"""

from __future__ import annotations

import json
from typing import Any, Literal, Union

from pydantic import ConfigDict, Field, TypeAdapter

from .schema import ActionStep, BranchCase, CallStep, CollectStep, EndStep, FlowFile, GotoStep, HandoffStep, SayStep, SetStep
from .schema import BranchStep as _BaseBranchStep
from .schema import Flow as _BaseFlow


# The models as the loader takes them keep branch cases and steps loose (it reports their errors
# itself, with file:line); for editors they are spelled out.
class BranchStep(_BaseBranchStep):
    model_config = ConfigDict(title="BranchStep", extra="forbid", frozen=True)
    branch: list[BranchCase] = Field(min_length=1, description="cases, tried in order: `if: CONDITION` "
                                     "(a jinja2 expression) or `else: true`, each with `then: TARGET`")


_StepDoc = Union[SayStep, CollectStep, BranchStep, SetStep, ActionStep, CallStep, HandoffStep, GotoStep, EndStep,
                 Literal["end"]]


class Flow(_BaseFlow):
    model_config = ConfigDict(title="Flow", extra="forbid", frozen=True)
    steps: list[_StepDoc] = Field(min_length=1, description="the steps, run in order; `end` alone ends the flow")


class _FlowFile(FlowFile):
    model_config = ConfigDict(title="omnibot flow file", extra="forbid", frozen=True)
    flows: dict[str, Flow] = Field(default_factory=dict)


def flow_json_schema() -> dict[str, Any]:
    """The schema as a JSON-able dict."""
    schema = TypeAdapter(_FlowFile).json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def flow_json_schema_text() -> str:
    return json.dumps(flow_json_schema(), indent=2, ensure_ascii=False) + "\n"
