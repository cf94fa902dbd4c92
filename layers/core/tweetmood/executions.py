"""Starting the scale-out state machines: the one place the core calls Step Functions (client passed in)."""

from __future__ import annotations

from typing import Any

import orjson


class StateMachines:
    """Starts executions through a boto3 Step Functions client created once per container by the caller."""

    def __init__(self, sfn_client: Any):
        self.client = sfn_client

    def start(self, arn: str, name: str, payload: dict) -> bool:
        """Start execution `name` of `arn` with `payload`; False when an execution of that name already exists
        (a duplicate event or a second sweep: the earlier execution does the work)."""
        try:
            self.client.start_execution(stateMachineArn=arn, name=name, input=orjson.dumps(payload).decode())
        except self.client.exceptions.ExecutionAlreadyExists:
            return False
        return True
