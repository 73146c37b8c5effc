"""The official Python `mcp` package (2.x) against `pplx-mcp`, over stdio and Streamable HTTP.

Environment: PPLX_MCP_BIN (the server binary), PPLX_MCP_URL (a running HTTP server's /mcp
URL), PPLX_MCP_TOKEN (its bearer token), SIM_URL (the `pplx-sim` binary, run with
tests/interop/scenario.toml: key `interop-key` works, `limited-key` is rate limited,
`fallback-key`'s streams break so the fallback answers, `slow-key`'s answers pause for
seconds after the run starts). Prints one line per check; exits non-zero on failure.
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time

import anyio
import httpx2
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

BIN = os.environ["PPLX_MCP_BIN"]
URL = os.environ["PPLX_MCP_URL"]
TOKEN = os.environ["PPLX_MCP_TOKEN"]
SIM_URL = os.environ["SIM_URL"]
QUESTION = [{"role": "user", "content": "Explain quantum computing"}]
TOOLS = ["perplexity_ask", "perplexity_reason", "perplexity_research", "perplexity_search", "perplexity_search_streaming"]

failures = []


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + str(detail)}")
    if not ok:
        failures.append(name)


async def exercise(session, label):
    await session.initialize()
    tools = (await session.list_tools()).tools
    check(f"{label}: lists the official four tools and the seed's", sorted(tool.name for tool in tools) == TOOLS, [tool.name for tool in tools])
    ask = next(tool for tool in tools if tool.name == "perplexity_ask")
    check(f"{label}: read-only, open-world", ask.annotations.read_only_hint and ask.annotations.open_world_hint, ask.annotations)
    check(f"{label}: messages is required", ask.input_schema.get("required") == ["messages"], ask.input_schema)

    progress = []

    async def on_progress(value, total, message):
        progress.append(message or "")

    result = await session.call_tool("perplexity_ask", {"messages": QUESTION}, progress_callback=on_progress)
    check(f"{label}: ask succeeds", not result.is_error, result.content)
    answer = result.structured_content["answer"]
    start = next((index for index in range(len(progress)) if "".join(progress[index:]) == answer), None)
    check(f"{label}: the progress ends with the answer, exactly", start is not None, f"{len(''.join(progress))} vs {len(answer)} chars")
    check(f"{label}: reasoning steps come first as progress", start is not None and any(step.startswith("Searching: ") for step in progress[:start]), progress[:5])
    check(f"{label}: several progress notifications", len(progress) > 1, len(progress))
    text = result.content[0].text
    check(f"{label}: citations listed", "\n\nCitations:\n[1] https://" in text, text[-200:])
    check(f"{label}: structured sources", len(result.structured_content["citations"]) >= 3, result.structured_content)

    result = await session.call_tool("perplexity_reason", {"messages": QUESTION, "strip_thinking": True})
    check(f"{label}: reason keeps reasoning out of the text", not result.is_error and "<think>" not in result.content[0].text, result.content[0].text[:80])
    result = await session.call_tool("perplexity_ask", {"messages": QUESTION, "strip_thinking": "legacy"})
    check(f"{label}: legacy arguments are ignored, not refused", not result.is_error, result.content)

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


def sim_log():
    return json.loads(httpx2.get(f"{SIM_URL}/_sim/log", timeout=10).text)


def server(key, extra_env=None, args=()):
    """stdio parameters for pplx-mcp against the simulator binary with `key`."""
    env = {"XDG_CONFIG_HOME": "/nonexistent", "PERPLEXITY_BASE_URL": SIM_URL, "PATH": os.environ.get("PATH", "")}
    if key:
        env["PERPLEXITY_API_KEY"] = key
    env.update(extra_env or {})
    return StdioServerParameters(command=BIN, args=["--no-cache", *args], env=env)


async def session_with(params, body):
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            return await body(session)


class ConnectProxy:
    """A small CONNECT proxy on loopback that records the tunnels it opened."""

    def __init__(self):
        self.tunnels = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            client, _ = self.listener.accept()
            threading.Thread(target=self.tunnel, args=(client,), daemon=True).start()

    def tunnel(self, client):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
        target = head.split(b" ")[1].decode()
        self.tunnels.append(target)
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")

        def pipe(source, sink):
            try:
                while data := source.recv(65536):
                    sink.sendall(data)
            except OSError:
                pass
            finally:
                for end in (source, sink):
                    try:
                        end.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
        pipe(client, upstream)


async def parity():
    """Drop-in parity with the official server (v1.3) and the seed server's tool, against the
    simulator binary, configured through the environment as the official server is."""
    label = "parity"

    async def seed(session):
        return await session.call_tool("perplexity_search_streaming", {"query": "Explain quantum computing"})

    result = await session_with(server("interop-key"), seed)
    value = result.structured_content
    check(f"{label}: seed tool streams, with its exact result keys", value.get("success") is True and value.get("streaming") is True and value.get("model") == "sonar" and set(value) == {"success", "answer", "model", "streaming"} and json.loads(result.content[0].text) == value and not result.is_error, value)
    result = await session_with(server("fallback-key"), seed)
    value = result.structured_content
    check(f"{label}: seed tool marks a fallback answer streaming: false", value.get("success") is True and value.get("streaming") is False and value.get("answer"), value)
    result = await session_with(server("wrong-key"), seed)
    value = result.structured_content
    check(f"{label}: seed tool failure is {{success: false, error}}", value.get("success") is False and isinstance(value.get("error"), str) and set(value) == {"success", "error"}, value)
    check(f"{label}: seed tool failure sets isError", result.is_error is True, result)

    # Cancelling a research call cancels the Agent run on the server.
    before = len(sim_log())

    async def cancel_research(session):
        async with anyio.create_task_group() as group:
            async def research():
                await session.call_tool("perplexity_research", {"messages": QUESTION})

            group.start_soon(research)
            with anyio.fail_after(30):
                while not any(entry["endpoint"] == "/v1/agent" and entry["ending"] == "InProgress" for entry in sim_log()[before:]):
                    await anyio.sleep(0.05)
            await anyio.sleep(0.3)
            group.cancel_scope.cancel()
        # The session stays open while the server cancels the run upstream.
        found = []
        with anyio.move_on_after(10):
            while not found:
                found = [entry for entry in sim_log()[before:] if entry["endpoint"].endswith("/cancel")]
                await anyio.sleep(0.05)
        return found

    cancels = await session_with(server("slow-key"), cancel_research)
    check(f"{label}: a cancelled research call cancels the run on the server", len(cancels) == 1 and cancels[0]["endpoint"].startswith("/v1/agent/resp_"), cancels)

    # PERPLEXITY_TIMEOUT_MS bounds a whole call.
    async def ask(session):
        started = time.monotonic()
        result = await session.call_tool("perplexity_ask", {"messages": QUESTION})
        return result, time.monotonic() - started

    result, elapsed = await session_with(server("slow-key", {"PERPLEXITY_TIMEOUT_MS": "1000"}), ask)
    check(f"{label}: PERPLEXITY_TIMEOUT_MS bounds the call", result.is_error and elapsed < 4 and "timed out" in result.content[0].text, (elapsed, result.content[0].text[:200]))

    # PERPLEXITY_PROXY: requests go through the proxy.
    proxy = ConnectProxy()
    result, _ = await session_with(server("interop-key", {"PERPLEXITY_PROXY": proxy.url}), ask)
    sim_host = SIM_URL.removeprefix("http://")
    check(f"{label}: PERPLEXITY_PROXY carries the requests", not result.is_error and proxy.tunnels and all(target == sim_host for target in proxy.tunnels), proxy.tunnels)
    https_proxy = ConnectProxy()
    result, _ = await session_with(server("interop-key", {"HTTPS_PROXY": https_proxy.url}), ask)
    check(f"{label}: HTTPS_PROXY too, when PERPLEXITY_PROXY is unset", not result.is_error and https_proxy.tunnels, https_proxy.tunnels)

    # Numbered keys, as the seed server configured its four rotating keys.
    result, _ = await session_with(server(None, {"PERPLEXITY_API_KEY_1": "interop-key", "PERPLEXITY_API_KEY_2": "limited-key"}), ask)
    check(f"{label}: PERPLEXITY_API_KEY_1..N are read", not result.is_error, result.content[0].text[:200])

    # No key: a clear failure, not simulated answers.
    env = {"XDG_CONFIG_HOME": "/nonexistent", "PATH": os.environ.get("PATH", "")}
    finished = subprocess.run([BIN], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    check(f"{label}: no key fails with a clear message", finished.returncode != 0 and "PERPLEXITY_API_KEY environment variable is required" in finished.stderr, (finished.returncode, finished.stderr[-300:]))

    # An address others can reach, with no token: refused.
    exposed = subprocess.run([BIN, "--http", "0.0.0.0:0"], env={**env, "PERPLEXITY_API_KEY": "interop-key"}, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    check(f"{label}: no token on a non-loopback address is refused", exposed.returncode != 0 and "refusing to serve" in exposed.stderr, exposed.stderr[-300:])

    # HTTP mode from the environment: PORT, BIND_ADDRESS, ALLOWED_ORIGINS; GET /health.
    env.update({"PERPLEXITY_API_KEY": "interop-key", "PERPLEXITY_BASE_URL": SIM_URL, "PORT": "0", "BIND_ADDRESS": "127.0.0.1", "ALLOWED_ORIGINS": "http://localhost:5173"})
    http = subprocess.Popen([BIN, "--http", "--no-cache"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for line in http.stderr:
            if line.startswith("pplx-mcp: serving MCP at "):
                url = line.split(" at ", 1)[1].strip()
                break
        base = url.removesuffix("/mcp")
        health = httpx2.get(f"{base}/health", timeout=10)
        check(f"{label}: GET /health", health.status_code == 200 and health.json().get("status") == "ok", health.text)
        body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "interop", "version": "1"}}}
        accept = {"Accept": "application/json, text/event-stream"}
        allowed = httpx2.post(url, json=body, headers={**accept, "Origin": "http://localhost:5173"}, timeout=10)
        foreign = httpx2.post(url, json=body, headers={**accept, "Origin": "http://evil.example"}, timeout=10)
        check(f"{label}: ALLOWED_ORIGINS admits its origin and no other", allowed.status_code == 200 and foreign.status_code == 403, (allowed.status_code, foreign.status_code))
    finally:
        http.kill()
        http.wait()


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

    # The answers just served, as Prometheus scrapes them (behind the same token).
    metrics_url = URL.rsplit("/mcp", 1)[0] + "/metrics"
    scraped = httpx2.get(metrics_url, headers=headers, timeout=10)
    text = scraped.text
    check("http: GET /metrics", scraped.status_code == 200 and scraped.headers.get("content-type", "").startswith("text/plain"), scraped.status_code)
    check(
        "http: /metrics has the GenAI client metrics of the answers",
        'gen_ai_client_operation_duration_seconds_count{' in text
        and 'gen_ai_provider_name="perplexity"' in text
        and 'gen_ai_token_type="output"' in text
        and "gen_ai_client_token_usage_bucket{" in text
        and "gen_ai_client_operation_time_to_first_chunk_seconds_bucket{" in text
        and "pplx_client_cost" in text
        and "pplx_client_key_cooldowns_total{" in text,
        text[:3000],
    )
    check("http: /metrics never shows the key", "interop-key" not in text)
    unauthorized = httpx2.get(metrics_url, timeout=10)
    check("http: /metrics without the token, 401", unauthorized.status_code == 401, unauthorized.status_code)

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

    await parity()

    print(f"mcp interop: {len(failures)} failed" if failures else "mcp interop: all checks passed")
    sys.exit(1 if failures else 0)


anyio.run(main)
