"""One client of `cargo xtask bench e2e`: the official `openai` or `perplexityai` Python SDK
against the simulator's firehose. Prints one JSON line: chunks, wall and CPU seconds, the
time from each call to its first delta, and the peak resident memory. With E2E_CA_FILE set
(the simulator's certificate, PEM) the base URL is HTTPS and the SDK's own httpx client trusts
that certificate.

    client.py openai|perplexityai agent|chat BASE_URL KEY long|concurrent|nonstream STREAMS RUNS

`agent` asks the Agent API as each SDK does (`responses.create`, streamed or not: the request
the migration guide gives for `sonar`, `perplexity/sonar` with the web_search tool); `chat`
asks chat completions (`chat.completions.create`, model `sonar`).
"""

import asyncio
import json
import os
import resource
import ssl
import sys
import time

client_name, api, base_url, key, scenario, streams, runs = sys.argv[1:8]
streams, runs = int(streams), int(runs)
MESSAGES = [{"role": "user", "content": "firehose"}]
# A thousand streams at once on one thread wait their turn to connect: as generous as the
# Rust clients' deadlines, so no client fails for want of patience.
TIMEOUT = 120.0


CA_FILE = os.environ.get("E2E_CA_FILE")


def http_client(sdk):
    """The SDK's default httpx client (its connection limits), trusting the simulator."""
    if CA_FILE is None:
        return None
    return sdk.DefaultAsyncHttpxClient(verify=ssl.create_default_context(cafile=CA_FILE))


def make_client():
    if client_name == "openai":
        import openai

        return openai.AsyncOpenAI(
            base_url=base_url, api_key=key, max_retries=0, timeout=TIMEOUT,
            http_client=http_client(openai),
        )
    import perplexity

    return perplexity.AsyncPerplexity(
        base_url=base_url, api_key=key, max_retries=0, timeout=TIMEOUT,
        http_client=http_client(perplexity),
    )


def agent_resource(client):
    """The Responses resource: the OpenAI SDK appends `/responses` to its base URL (so it is
    given `.../v1`), the Perplexity SDK posts to `/v1/responses` itself."""
    return client.responses


AGENT = {"model": "perplexity/sonar", "input": "firehose", "tools": [{"type": "web_search"}]}


async def one_stream(client, ttfts):
    started = time.perf_counter()
    first = None
    chunks = 0
    if api == "agent":
        # background=True: the request the Rust clients send (the provider's default), so the
        # simulator does the same work (keeps the run) for every client.
        stream = await agent_resource(client).create(**AGENT, stream=True, background=True)
        async for event in stream:
            if event.type == "response.output_text.delta" and event.delta:
                if first is None:
                    first = time.perf_counter()
                chunks += 1
    else:
        stream = await client.chat.completions.create(model="sonar", messages=MESSAGES, stream=True)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                if first is None:
                    first = time.perf_counter()
                chunks += 1
    ttfts.append((first - started) * 1e6)
    return chunks


async def one_answer(client):
    if api == "agent":
        response = await agent_resource(client).create(**AGENT)
        return 1 if response.output_text else 0
    response = await client.chat.completions.create(model="sonar", messages=MESSAGES)
    return 1 if response.choices[0].message.content else 0


async def main():
    client = make_client()
    ttfts = []
    # One warm-up call: imports, the connection pool and its first connection.
    if scenario == "nonstream":
        await one_answer(client)
    else:
        await one_stream(client, [])
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    wall_before = time.perf_counter()
    chunks = 0
    for _ in range(runs):
        if scenario == "nonstream":
            for _ in range(streams):
                chunks += await one_answer(client)
        else:
            counts = await asyncio.gather(*(one_stream(client, ttfts) for _ in range(streams)))
            chunks += sum(counts)
    wall = time.perf_counter() - wall_before
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "client": client_name,
        "scenario": scenario,
        "streams": streams,
        "chunks": chunks,
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime - cpu_before,
        "ttft_us": ttfts,
        "peak_rss_kib": usage.ru_maxrss,
    }))


asyncio.run(main())
