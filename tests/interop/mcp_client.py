"""The official Python `mcp` package (2.x) against `pplx-mcp`, over stdio and Streamable HTTP.

Environment: PPLX_MCP_BIN (the server binary), PPLX_MCP_URL (a running HTTP server's /mcp
URL), PPLX_MCP_TOKEN (its bearer token). Prints one line per check; exits non-zero on failure.
"""
import os
import sys
import time

import anyio
import httpx2
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

BIN = os.environ["PPLX_MCP_BIN"]
URL = os.environ["PPLX_MCP_URL"]
TOKEN = os.environ["PPLX_MCP_TOKEN"]
QUESTION = [{"role": "user", "content": "Explain quantum computing"}]
TOOLS = ["perplexity_ask", "perplexity_reason", "perplexity_research", "perplexity_search"]

failures = []


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + str(detail)}")
    if not ok:
        failures.append(name)


async def exercise(session, label):
    await session.initialize()
    tools = (await session.list_tools()).tools
    check(f"{label}: lists the four tools", sorted(tool.name for tool in tools) == TOOLS, [tool.name for tool in tools])
    ask = next(tool for tool in tools if tool.name == "perplexity_ask")
    check(f"{label}: read-only, open-world", ask.annotations.read_only_hint and ask.annotations.open_world_hint, ask.annotations)
    check(f"{label}: messages is required", ask.input_schema.get("required") == ["messages"], ask.input_schema)

    progress = []

    async def on_progress(value, total, message):
        progress.append(message or "")

    result = await session.call_tool("perplexity_ask", {"messages": QUESTION}, progress_callback=on_progress)
    check(f"{label}: ask succeeds", not result.is_error, result.content)
    answer = result.structured_content["answer"]
    check(f"{label}: progress adds up to the answer", "".join(progress) == answer, f"{len(''.join(progress))} vs {len(answer)} chars")
    check(f"{label}: several progress notifications", len(progress) > 1, len(progress))
    text = result.content[0].text
    check(f"{label}: citations listed", "\n\nCitations:\n[1] https://" in text, text[-200:])
    check(f"{label}: structured sources", len(result.structured_content["citations"]) >= 3, result.structured_content)

    result = await session.call_tool("perplexity_reason", {"messages": QUESTION, "strip_thinking": True})
    check(f"{label}: reason strips thinking", not result.is_error and "<think>" not in result.content[0].text, result.content[0].text[:80])

    result = await session.call_tool("perplexity_search", {"query": "olympus mons", "max_results": 3})
    check(f"{label}: search returns 3 results", len(result.structured_content["items"]) == 3, result.structured_content)

    try:
        await session.call_tool("perplexity_ask", {"messages": "not a list"})
        check(f"{label}: bad arguments are a JSON-RPC error", False, "no error")
    except Exception as error:  # noqa: BLE001 - the SDK's error type, whatever its name
        check(f"{label}: bad arguments are a JSON-RPC error naming the field", "messages" in str(error), error)

    first_progress = anyio.Event()

    async def on_research_progress(value, total, message):
        first_progress.set()

    started = time.monotonic()
    async with anyio.create_task_group() as group:
        async def research():
            await session.call_tool("perplexity_research", {"messages": QUESTION}, progress_callback=on_research_progress)

        group.start_soon(research)
        with anyio.fail_after(30):
            await first_progress.wait()
        group.cancel_scope.cancel()
    cancelled_after = time.monotonic() - started
    check(f"{label}: research cancelled mid-answer", cancelled_after < 10, cancelled_after)
    result = await session.call_tool("perplexity_ask", {"messages": [{"role": "user", "content": "still there?"}]})
    check(f"{label}: the server still answers after a cancel", not result.is_error, result.content)


async def main():
    params = StdioServerParameters(command=BIN, args=["--sim", "--no-cache"], env={"XDG_CONFIG_HOME": "/nonexistent"})
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await exercise(session, "stdio")

    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as client:
        async with streamable_http_client(URL, http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                await exercise(session, "http")

    async with httpx2.AsyncClient(timeout=10) as plain:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        response = await plain.post(URL, json=body, headers={"Accept": "application/json, text/event-stream"})
        check("http: no token, 401", response.status_code == 401, response.status_code)
        response = await plain.post(
            URL,
            json=body,
            headers={**headers, "Origin": "http://evil.example", "Accept": "application/json, text/event-stream"},
        )
        check("http: a foreign Origin is refused", response.status_code == 403, response.status_code)

    print(f"mcp interop: {len(failures)} failed" if failures else "mcp interop: all checks passed")
    sys.exit(1 if failures else 0)


anyio.run(main)
