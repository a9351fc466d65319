"""Every operation of the published API schema, fuzzed (schemathesis): whatever a client
sends that fits the schema, or almost, the server never answers 5xx.

A few examples per operation, against a real server with real models on 127.0.0.1 (its
own: the run leaves render jobs behind, and it is the one server that publishes
``/openapi.json``, ``server.public_docs`` being off by default). Bounded: a handful of
examples per operation and a time limit on each request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from .conftest import RunningServer, serve, server_settings

pytestmark = [pytest.mark.serving, pytest.mark.integration]

EXAMPLES_PER_OPERATION = 3
REQUEST_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    base = server_settings(tmp_path_factory.mktemp("fuzz-data"), public_docs=True)
    # A generated max_tokens may be huge: a small context keeps each reply short.
    fuzz = base.model_copy(update={"llm": base.llm.model_copy(update={"context_tokens": 512})})
    with serve(fuzz) as running:
        yield running


def fuzz(operation: Any, mode: GenerationMode, server: RunningServer,
         statuses: dict[str, list[int]]) -> None:
    """A few cases of ``operation`` in ``mode``, each sent with a working key."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def call(case: Any) -> None:
        response = case.call(base_url=server.base_url, headers=server.headers(),
                             timeout=REQUEST_TIMEOUT_S)
        statuses.setdefault(operation.label, []).append(response.status_code)
        case.validate_response(response, checks=[not_a_server_error])

    call()


def test_no_input_makes_the_server_fail(fuzzed_server: RunningServer) -> None:
    """Valid and invalid inputs (schemathesis' positive and negative modes) for every
    operation in ``/openapi.json``; any 5xx fails, and names the operation and the case.

    (schemathesis' own pytest integration, ``from_fixture``, does not run on pytest 9:
    the operations are walked here instead, each a small Hypothesis test.)
    """
    api = schemathesis.openapi.from_url(f"{fuzzed_server.base_url}/openapi.json")
    failures: list[str] = []
    statuses: dict[str, list[int]] = {}
    for result in api.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz(operation, mode, fuzzed_server, statuses)
            except Unsatisfiable:
                pass  # nothing in this operation can be made invalid
            except Exception as exc:  # one operation's failure does not hide the others'
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert len(statuses) >= 15  # the schema was read, and each operation called
    assert not failures, "\n\n".join(failures)
    served = [label for label, codes in statuses.items() if any(c < 300 for c in codes)]
    assert len(served) >= 5, statuses  # authenticated: not everything was a refusal


def test_the_published_schema_is_the_apps(fuzzed_server: RunningServer) -> None:
    published = httpx.get(f"{fuzzed_server.base_url}/openapi.json", timeout=30).json()
    assert published["paths"].keys() == fuzzed_server.app.openapi()["paths"].keys()
    assert "/v1/sessions/webrtc" in published["paths"]
