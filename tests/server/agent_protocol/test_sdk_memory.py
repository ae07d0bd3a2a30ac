"""The Task Agent remembers a user's preferred language across threads, through the real server.

The real agent graph on the scripted model, two tenants: tenant ``default`` states a preference in
one thread, and a later thread's coding request that names no language is written in TypeScript;
the preference is an item of the tenant's store (``client.store``), and tenant ``other`` neither
sees it nor gets TypeScript.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.server.agent_protocol.support import API_KEY, OTHER_KEY, ServerProcess
from tests.support.scripted_openai import CODE, ROUTER, TESTS, Reply, ScriptedOpenAI

REVERSE_TS = (
    "```typescript\nfunction reverse(s: string): string {\n  return s.split('').reverse().join('');\n}\n"
    "console.log(reverse('abc'));\n```\n"
)
REVERSE_PY = "```python\ndef reverse(s):\n    return s[::-1]\n\nprint(reverse('abc'))\n```\n"
REQUEST = "Write a function that reverses a string and print reverse('abc')"


@pytest.fixture(scope="module")
def memory_server(
    tmp_path_factory: pytest.TempPathFactory, scripted_llm: ScriptedOpenAI
) -> Iterator[ServerProcess]:
    env = {
        "OPENAI_BASE_URL": scripted_llm.url,
        "OPENAI_API_KEY": "scripted",
        "AGENTIC_MODEL": "scripted",
        "AGENTIC_API_KEYS": f"{API_KEY},other:{OTHER_KEY}",
        "AGENTIC_STORE_EMBEDDINGS": "off",
    }
    with ServerProcess(tmp_path_factory.mktemp("ap-memory"), env) as server:
        yield server


@pytest.fixture
async def clients(memory_server: ServerProcess) -> AsyncIterator[tuple[LangGraphClient, LangGraphClient]]:
    mine = get_client(url=memory_server.url, api_key=API_KEY)
    theirs = get_client(url=memory_server.url, api_key=OTHER_KEY)
    try:
        yield mine, theirs
    finally:
        await mine.aclose()
        await theirs.aclose()


async def _say(client: LangGraphClient, text: str) -> dict[str, Any]:
    thread = await client.threads.create()
    result = await client.runs.wait(
        thread["thread_id"], "agent", input={"messages": [{"role": "human", "content": text}]}
    )
    assert isinstance(result, dict), result
    return result


async def test_a_preference_from_one_thread_steers_the_next(
    clients: tuple[LangGraphClient, LangGraphClient], scripted_llm: ScriptedOpenAI
) -> None:
    mine, theirs = clients
    scripted_llm.reset()
    first = await _say(mine, "I prefer TypeScript")
    assert first["messages"][-1]["content"].startswith("Noted: I will write code in TypeScript")
    assert scripted_llm.requests == []  # the statement is read by rule, not by the model
    item = await mine.store.get_item(["preferences"], "language")
    assert item is not None and item["value"]["value"] == "typescript"
    assert await theirs.store.get_item(["preferences"], "language") is None

    scripted_llm.add(Reply(REVERSE_TS, match="TypeScript (Deno)"), Reply(REVERSE_PY, match="Python 3"))
    scripted_llm.when(TESTS, "```python\nassert True\n```\n")
    scripted_llm.when(ROUTER, '{"next": "answer", "answer": "done"}')
    second = await _say(mine, REQUEST)  # a new thread: nothing of the first one in it
    assert second["preferences"] == {"language": "typescript"}
    assert "main.ts" in second["files"] and "main.py" not in second["files"]
    assert second["code_result"]["status"] == "passed", second["code_result"]
    assert second["code_result"]["language"] == "typescript"
    assert "cba" in second["messages"][-1]["content"]

    other = await _say(theirs, REQUEST)  # the other tenant stated nothing: Python
    assert other["preferences"] == {}
    assert "main.py" in other["files"] and other["code_result"]["status"] == "passed"
    code_prompts = [r["messages"][0]["content"] for r in scripted_llm.requests_matching(CODE)]
    assert len(code_prompts) == 2
    assert "TypeScript (Deno)" in code_prompts[0] and "Python 3" in code_prompts[1]
