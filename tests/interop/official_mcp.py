"""Perplexity's official MCP server (`@perplexity-ai/mcp-server` from npm) against pplx-sim.

The official server parses what it receives with its own zod schemas (`src/validation.ts`),
so it judges the simulator from the other side: if the simulator sends a shape the real
service does not (a `"date": null` where the service leaves an unknown date out), one of its
tools fails. Every one of its four tools is called over stdio with the Python `mcp` client.

Environment: OFFICIAL_MCP_JS (the server's dist/index.js), SIM_URL and SIM_KEY (a working
key of the running simulator). Prints one line per check; exits non-zero on failure.
"""
import os
import sys

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

SERVER = os.environ["OFFICIAL_MCP_JS"]
SIM_URL = os.environ["SIM_URL"]
KEY = os.environ["SIM_KEY"]
QUESTION = [{"role": "user", "content": "Explain quantum computing"}]
OFFICIAL_TOOLS = ["perplexity_ask", "perplexity_reason", "perplexity_research", "perplexity_search"]

failures = []


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + str(detail)[:400]}")
    if not ok:
        failures.append(name)


def text_of(result):
    return "".join(part.text for part in result.content if getattr(part, "text", None))


async def main():
    params = StdioServerParameters(
        command="node",
        args=[SERVER],
        env={**os.environ, "PERPLEXITY_API_KEY": KEY, "PERPLEXITY_BASE_URL": SIM_URL},
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            names = sorted(tool.name for tool in (await session.list_tools()).tools)
            check("official server: lists its four tools", all(name in names for name in OFFICIAL_TOOLS), names)
            for tool in ["perplexity_ask", "perplexity_reason", "perplexity_research"]:
                result = await session.call_tool(tool, {"messages": QUESTION})
                text = text_of(result)
                check(f"official {tool}: the simulator's answer parses and comes through",
                      not result.is_error and "simulated offline by pplx" in text, text)
            result = await session.call_tool("perplexity_ask", {
                "messages": QUESTION, "search_recency_filter": "week",
                "search_domain_filter": ["example.org"], "search_context_size": "high"})
            text = text_of(result)
            check("official perplexity_ask with filters: the simulator takes its web_search tool",
                  not result.is_error and "https://example.org/" in text, text)
            result = await session.call_tool("perplexity_search", {"query": "quantum computing", "max_results": 5})
            text = text_of(result)
            check("official perplexity_search: its zod schema accepts the simulator's results (no null dates)",
                  not result.is_error and "Failed to parse" not in text and "URL: https://" in text, text)


anyio.run(main)
print(f"official mcp server: {len(failures)} failed")
sys.exit(1 if failures else 0)
