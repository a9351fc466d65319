"""A Chinese message to the OpenAI-compatible chat endpoint is answered in Chinese."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from talkface.text.language import detect_language

from .conftest import RunningServer

pytestmark = [pytest.mark.serving, pytest.mark.integration]


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=server.api_key,
                       max_retries=0, timeout=120.0) as client:
        yield client


QUESTION = "你好，请问中国的首都是哪里？"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_chinese_message_is_answered_in_chinese(client: openai.OpenAI, stream: bool) -> None:
    if stream:
        chunks = client.chat.completions.create(
            model="any", max_tokens=48, stream=True,
            messages=[{"role": "user", "content": QUESTION}])
        answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        completion = client.chat.completions.create(
            model="any", max_tokens=48, messages=[{"role": "user", "content": QUESTION}])
        answer = completion.choices[0].message.content or ""
    assert answer.strip() and detect_language(answer) == "zh", answer
