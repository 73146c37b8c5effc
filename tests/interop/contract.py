"""The contract check: the official `perplexityai` SDK's own types judge both sides.

Responses: every shape the running simulator emits (Sonar chunks and bodies for every model,
Agent API events of every type and bodies for every preset, Search API bodies, error bodies)
is validated with the SDK's pydantic models (`StreamChunk`, the `ResponseStreamChunk` union,
`ResponseCreateResponse`, `SearchCreateResponse`, `ErrorInfo`).

Requests: every body our client sent (JSON lines from `cargo run -p tests --example
contract-requests`, recorded by the simulator) is validated with the SDK's request types
(`CompletionCreateParams`, `ResponseCreateParams`, `SearchCreateParams`) through pydantic's
`TypeAdapter`, Required fields and literals enforced, and no key the SDK does not know
(except those listed in ALLOWED_EXTRA, each with its reason).

Before judging, the script proves the judges can fail: known-bad samples must be rejected.

Environment: SIM_URL, SIM_KEY (a working key), SIM_FAILING_KEY (a key whose streams end in
an error event), CONTRACT_REQUESTS (the JSON-lines file). Prints one line per check and exits
non-zero if any failed.
"""
import json
import os
import sys
import typing

import httpx
from pydantic import TypeAdapter, ValidationError

# The SDK's per-type modules under `perplexity.types` (the names `perplexity.types` itself
# re-exports come from `perplexity.generated.api`, where some fields the modules mark
# Required, such as an input item's `type`, are optional: the stricter reading judges).
from perplexity.types import response_create_params, search_create_params
from perplexity.types.chat import completion_create_params
from perplexity.types.error_info import ErrorInfo
from perplexity.types.response_create_response import ResponseCreateResponse
from perplexity.types.response_stream_chunk import ResponseStreamChunk
from perplexity.types.search_create_response import SearchCreateResponse
from perplexity.types.stream_chunk import StreamChunk

URL = os.environ["SIM_URL"]
KEY = os.environ["SIM_KEY"]
FAILING = os.environ["SIM_FAILING_KEY"]
REQUESTS = os.environ["CONTRACT_REQUESTS"]
QUESTION = "Explain quantum computing"

# Keys our client sends that the SDK's request types do not list, and why they are right.
ALLOWED_EXTRA = {
    # Agent API: PERPLEXITY-WIRE.md lists stream_options{include_usage} (as OpenAI's
    # Responses API has it); the SDK's ResponseCreateParams does not model it yet.
    "/v1/agent": {"stream_options"},
}

failures = []
checked = {"responses": 0, "requests": 0}


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + detail}")
    if not ok:
        failures.append(name)


def materialize(value):
    """Pydantic validates `Iterable[...]` fields lazily: walk them so every item is judged."""
    if isinstance(value, dict):
        return {key: materialize(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [materialize(item) for item in value]
    if hasattr(value, "__iter__") and not isinstance(value, (str, bytes)):
        return [materialize(item) for item in value]
    return value


def known_keys(typed_dict):
    keys = set()
    for member in typing.get_args(typed_dict) or (typed_dict,):
        keys |= set(typing.get_type_hints(member).keys())
    return keys


def judge(name, validate):
    try:
        validate()
        return True
    except ValidationError as error:
        check(name, False, str(error).replace("\n", " | ")[:600])
        return False


# ---- the judges can fail
STREAM_CHUNKS = TypeAdapter(ResponseStreamChunk)
PARAMS = {
    "/chat/completions": completion_create_params.CompletionCreateParams,
    "/v1/agent": response_create_params.ResponseCreateParams,
    "/search": search_create_params.SearchCreateParams,
}
ADAPTERS = {path: TypeAdapter(params) for path, params in PARAMS.items()}


def rejects(call):
    try:
        materialize(call())
    except ValidationError:
        return True
    return False


check("judge: a Sonar chunk without `created` is rejected", rejects(lambda: StreamChunk.model_validate({"id": "x", "model": "sonar", "choices": []})))
check("judge: response.failed with the error inside `response` is rejected", rejects(lambda: STREAM_CHUNKS.validate_python({"type": "response.failed", "sequence_number": 1, "response": {"error": {"message": "x"}}})))
check("judge: a search result without `id` is rejected", rejects(lambda: STREAM_CHUNKS.validate_python({"type": "response.reasoning.search_results", "sequence_number": 1, "results": [{"title": "t", "url": "u", "snippet": "s"}]})))
check("judge: status `incomplete` is rejected", rejects(lambda: ResponseCreateResponse.model_validate({"id": "r", "created_at": 1, "model": "m", "object": "response", "output": [], "status": "incomplete"})))
check("judge: an input item without `type` is rejected", rejects(lambda: ADAPTERS["/v1/agent"].validate_python({"preset": "fast", "input": [{"role": "user", "content": "x"}]})))
check("judge: a message role the API lacks is rejected", rejects(lambda: ADAPTERS["/v1/agent"].validate_python({"preset": "fast", "input": [{"type": "message", "role": "tool", "content": "x"}]})))

# ---- responses: what the simulator emits
client = httpx.Client(base_url=URL, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}]


def sse(path, body, key=KEY):
    """(event name, data) of every frame of a streamed response."""
    frames = []
    with client.stream("POST", path, json=body, headers={"Authorization": f"Bearer {key}"}) as response:
        if response.status_code != 200:
            raise AssertionError(f"{path} answered {response.status_code}")
        event, data = None, []
        for line in response.iter_lines():
            if line == "":
                if data:
                    frames.append((event, "\n".join(data)))
                event, data = None, []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" ") if line[5:6] == " " else line[5:])
    return frames


for model in ["sonar", "sonar-pro", "sonar-reasoning-pro", "sonar-deep-research"]:
    for extras in [{}, {"return_related_questions": True, "return_images": True, "max_tokens": 30}]:
        body = {"model": model, "messages": MESSAGES, **extras}
        label = f"sonar {model}{' with extras' if extras else ''}"
        frames = sse("/chat/completions", {**body, "stream": True})
        ok = all(judge(f"{label}: chunk {index}", lambda: StreamChunk.model_validate(json.loads(data))) for index, (_, data) in enumerate(frames))
        checked["responses"] += len(frames)
        last = json.loads(frames[-1][1])
        check(f"{label}: stream ({len(frames)} chunks) valid, ends with the done chunk", ok and last["object"] == "chat.completion.done", last.get("object", ""))
        reply = client.post("/chat/completions", json=body)
        checked["responses"] += 1
        check(f"{label}: body valid", reply.status_code == 200 and judge(f"{label}: body", lambda: StreamChunk.model_validate(reply.json())))

seen_types = set()
for model in ["fast", "medium", "high", "fast-search", "pro-search", "deep-research", "openai/gpt-5-mini"]:
    key = "model" if "/" in model else "preset"
    input_items = [{"type": "message", "role": message["role"], "content": message["content"]} for message in MESSAGES]
    for extras in [{}, {"max_output_tokens": 30}]:
        body = {key: model, "input": input_items, **extras}
        label = f"agent {model}{' limited' if extras else ''}"
        frames = sse("/v1/agent", {**body, "stream": True})
        ok = True
        for index, (event, data) in enumerate(frames):
            parsed = json.loads(data)
            seen_types.add(parsed.get("type"))
            ok &= judge(f"{label}: event {index} ({parsed.get('type')})", lambda: STREAM_CHUNKS.validate_python(parsed))
            ok &= event == parsed.get("type")
        checked["responses"] += len(frames)
        check(f"{label}: stream ({len(frames)} events) valid, event names match types", ok)
        reply = client.post("/v1/agent", json=body)
        checked["responses"] += 1
        check(f"{label}: body valid", reply.status_code == 200 and judge(f"{label}: body", lambda: ResponseCreateResponse.model_validate(reply.json())))
        if model in ("medium", "high", "pro-search", "deep-research"):
            batches = [item for item in reply.json()["output"] if item["type"] == "search_results"]
            ids = [result["id"] for item in batches for result in item["results"]]
            check(f"{label}: several search batches, ids distinct across them", len(batches) >= 2 and len(ids) == len(set(ids)), str(ids))

check("agent: every event type is one the SDK lists", all(kind is not None for kind in seen_types), str(seen_types))

failed = sse("/v1/agent", {"preset": "fast", "input": QUESTION, "stream": True}, key=FAILING)
last = json.loads(failed[-1][1])
checked["responses"] += len(failed)
check("agent: response.failed valid, with a top-level ErrorInfo", last["type"] == "response.failed" and judge("agent: response.failed", lambda: STREAM_CHUNKS.validate_python(last)) and judge("agent: ErrorInfo", lambda: ErrorInfo.model_validate(last["error"])))

reply = client.post("/search", json={"query": QUESTION, "max_results": 5})
checked["responses"] += 1
check("search: body valid", reply.status_code == 200 and judge("search body", lambda: SearchCreateResponse.model_validate(reply.json())))

reply = client.post("/v1/agent", json={"preset": "fast", "input": [{"role": "user", "content": QUESTION}]})
checked["responses"] += 1
check("agent: an input item without `type` is a 400 with an ErrorInfo", reply.status_code == 400 and judge("agent 400 body", lambda: ErrorInfo.model_validate(reply.json()["error"])), reply.text[:200])
reply = client.post("/v1/agent", json={"preset": "nope", "input": QUESTION})
check("agent: an unknown preset is a 400 with an ErrorInfo", reply.status_code == 400 and judge("agent preset body", lambda: ErrorInfo.model_validate(reply.json()["error"])), reply.text[:200])
reply = client.post("/chat/completions", json={"model": "not-a-model", "messages": MESSAGES})
error = reply.json().get("error", {})
check("sonar: an invalid model is the recorded 400 shape", reply.status_code == 400 and error.get("type") == "invalid_model" and isinstance(error.get("message"), str), reply.text[:200])
reply = httpx.post(f"{URL}/chat/completions", json={"model": "sonar", "messages": MESSAGES}, headers={"Authorization": "Bearer wrong"})
check("sonar: a bad key is the HTML 401 page", reply.status_code == 401 and reply.headers["content-type"].startswith("text/html"))
reply = client.post("/v1/agent/resp_0123/cancel", json={})
checked["responses"] += 1
check("agent: cancel answers a response object", reply.status_code == 200 and judge("cancel body", lambda: ResponseCreateResponse.model_validate(reply.json())) and reply.json()["status"] == "cancelled")

# ---- requests: what our client sends
lines = [json.loads(line) for line in open(REQUESTS) if line.strip()]
check("requests: the client's matrix was recorded", len(lines) >= 20, str(len(lines)))
kinds = set()
for index, line in enumerate(lines):
    endpoint, body = line["endpoint"], line["body"]
    if endpoint.endswith("/cancel"):
        continue
    adapter = ADAPTERS.get(endpoint)
    if adapter is None:
        check(f"request {index}: endpoint {endpoint} is one the SDK models", False)
        continue
    label = f"request {index} {endpoint} {body.get('model') or body.get('preset') or ''} stream={line['stream']}"
    ok = judge(label, lambda: materialize(adapter.validate_python(body)))
    extra = set(body) - known_keys(PARAMS[endpoint]) - ALLOWED_EXTRA.get(endpoint, set())
    ok &= not extra
    check(label, ok and line["status"] == 200, f"unknown keys {sorted(extra)}" if extra else f"status {line['status']}")
    checked["requests"] += 1
    kinds.add(endpoint)
check("requests: both APIs and search were judged", kinds == set(PARAMS), str(kinds))

print(f"contract: {checked['responses']} responses and {checked['requests']} requests judged by the SDK's types; {len(failures)} failed")
sys.exit(1 if failures else 0)
