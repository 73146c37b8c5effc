"""The contract check: the official `perplexityai` SDK's own types judge both sides.

Responses: every shape the running simulator emits (Sonar chunks and bodies for every model,
Agent API events of every type and bodies for every preset, Search API bodies, error bodies)
is validated with the SDK's pydantic models (`StreamChunk`, the `ResponseStreamChunk` union,
`ResponseCreateResponse`, `SearchCreateResponse`, `ErrorInfo`).

Tool calling and attachments: the simulator's tool-calling Agent streams and bodies (a
`function_call` item, status `requires_action`) by the same models and `FunctionCallOutputItem`;
images and files accepted and acknowledged, bad parts refused with an `ErrorInfo`; and at a
second simulator playing an OpenAI-compatible endpoint (SIM_COMPATIBLE_URL), the official
`openai` client streams a tool call and reassembles it from our `delta.tool_calls` fragments,
every chunk valid as its `ChatCompletionChunk`.

Requests: every body our client sent (JSON lines from `cargo run -p tests --example
contract-requests`, recorded by the simulator) is validated with the SDK's request types
(`CompletionCreateParams`, `ResponseCreateParams`, `SearchCreateParams`) through pydantic's
`TypeAdapter`, Required fields and literals enforced, and no key the SDK does not know
(except those listed in ALLOWED_EXTRA, each with its reason). Agent requests are judged by
the generated schema's `ResponsesRequestInput` too (the only judge of `input_file` parts,
which the per-type module does not list yet). (The `openai` package's request TypedDicts are
too recursive for pydantic's `TypeAdapter`, which panics on them; its client judges the
compatible endpoint's responses instead, above.)

Before judging, the script proves the judges can fail: known-bad samples must be rejected.

Environment: SIM_URL, SIM_COMPATIBLE_URL, SIM_KEY (a working key), SIM_FAILING_KEY (a key whose streams end in
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
from openai import OpenAI
from openai.types.chat import ChatCompletionChunk
import perplexity.generated.api as generated
from perplexity.generated.api import ResponseStreamEventOutput, ResponsesRequestInput, ResponsesResponseOutput
from perplexity.types.error_info import ErrorInfo
from perplexity.types.function_call_output_item import FunctionCallOutputItem
from perplexity.types.response_create_response import ResponseCreateResponse
from perplexity.types.response_stream_chunk import ResponseStreamChunk
from perplexity.types.search_create_response import SearchCreateResponse
from perplexity.types.stream_chunk import StreamChunk

URL = os.environ["SIM_URL"]
COMPATIBLE_URL = os.environ["SIM_COMPATIBLE_URL"]
KEY = os.environ["SIM_KEY"]
FAILING = os.environ["SIM_FAILING_KEY"]
REQUESTS = os.environ["CONTRACT_REQUESTS"]
QUESTION = "Explain quantum computing"

# Keys our client sends that the SDK's per-type request modules do not list, and why they
# are right.
ALLOWED_EXTRA = {
    # Agent API: `effort` (the levels that replace presets), `prompt_cache_key` and
    # `tool_choice` are in the generated schema's ResponsesRequestInput, which judges every
    # Agent request below with unknown keys forbidden; the per-type ResponseCreateParams
    # predates them. So does it `service_tier`, `temperature` and `top_p` (the sampling a
    # migrated Sonar request keeps, per the migration skill's request mapping).
    "/v1/agent": {"effort", "prompt_cache_key", "tool_choice", "service_tier", "temperature", "top_p"},
}

# The generated schema's request models, strict in this judge only: an unknown key anywhere
# in a request (a misplaced filter, a stray option) is an error, not silently ignored.
for _name, _model in vars(generated).items():
    if isinstance(_model, type) and issubclass(_model, generated.BaseModel) and _name.endswith("Input"):
        _model.model_config["extra"] = "forbid"
for _name, _model in vars(generated).items():
    if isinstance(_model, type) and issubclass(_model, generated.BaseModel) and _name.endswith("Input"):
        _model.model_rebuild(force=True)
# The event union names its members as forward references: resolve them in the module.
GENERATED_EVENTS = TypeAdapter(typing.Union[tuple(
    getattr(generated, member.__forward_arg__) if isinstance(member, typing.ForwardRef) else member
    for member in typing.get_args(ResponseStreamEventOutput))])

failures = []
checked = {"responses": 0, "requests": 0}


def as_judged(value):
    """An answer the output-token cap cut ends `response.incomplete` with status `incomplete`
    and `incomplete_details.reason` (Perplexity's migration skill, `response-and-streaming.md`:
    "exactly one of response.completed, response.failed, response.incomplete,
    response.cancelled"). SDK 0.46.1's types predate that terminal: they list neither the
    event nor the status. Such a value is judged as the completed one it otherwise is, with
    only those two literals swapped, after `incomplete_details.reason` is checked here."""
    response = value.get("response", value) if isinstance(value, dict) else None
    if not isinstance(response, dict) or response.get("status") != "incomplete":
        return value
    if not isinstance((response.get("incomplete_details") or {}).get("reason"), str):
        raise ValueError("an incomplete response without incomplete_details.reason")
    judged = json.loads(json.dumps(value))
    inner = judged.get("response", judged)
    inner["status"] = "completed"
    if judged.get("type") == "response.incomplete":
        judged["type"] = "response.completed"
    return judged


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

check("judge: a function_call item without `call_id` is rejected", rejects(lambda: FunctionCallOutputItem.model_validate({"type": "function_call", "id": "fc_1", "name": "f", "arguments": "{}", "status": "completed"})))
check("judge: an unknown request key is rejected by the strict generated schema", rejects(lambda: ResponsesRequestInput.model_validate({"model": "m", "input": "x", "stream_options": {"include_usage": True}})))
check("judge: a Sonar-style filter at the top of an Agent request is rejected", rejects(lambda: ResponsesRequestInput.model_validate({"model": "m", "input": "x", "search_recency_filter": "week"})))
check("judge: an input part of an unknown type is rejected by the generated schema", rejects(lambda: ResponsesRequestInput.model_validate({"model": "m", "input": [{"type": "message", "role": "user", "content": [{"type": "input_video", "text": "x"}]}]})))

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

# Sonar's concise mode: reasoning as delta.reasoning_steps, then the answer without the
# cumulative message.
for model in ["sonar", "sonar-reasoning-pro"]:
    frames = sse("/chat/completions", {"model": model, "messages": MESSAGES, "stream": True, "stream_mode": "concise"})
    chunks = [json.loads(data) for _, data in frames]
    ok = all(judge(f"sonar concise {model}: chunk {index}", lambda: StreamChunk.model_validate(chunk)) for index, chunk in enumerate(chunks))
    checked["responses"] += len(chunks)
    objects = [chunk["object"] for chunk in chunks]
    steps = [step for chunk in chunks if chunk["object"] == "chat.reasoning" for step in chunk["choices"][0]["delta"].get("reasoning_steps", [])]
    check(f"sonar concise {model}: valid, reasoning steps, then reasoning.done, chunks and the done chunk",
          ok and steps and objects[0] == "chat.reasoning" and "chat.reasoning.done" in objects and objects[-1] == "chat.completion.done", str(objects[:4]))

# Events only the generated schema lists (the per-type union predates them).
GENERATED_ONLY = {"response.reasoning.image_search_queries", "response.reasoning.image_search_results"}
frames = sse("/v1/agent", {"effort": "medium", "input": [{"type": "message", "role": "user", "content": QUESTION}], "stream": True,
                           "tools": [{"type": "image_search"}], "skills": [{"type": "builtin", "name": "office"}]})
ok = True
kinds = []
for index, (event, data) in enumerate(frames):
    parsed = json.loads(data)
    kinds.append(parsed["type"])
    if parsed["type"] not in GENERATED_ONLY:
        ok &= judge(f"agent images and skills: event {index} ({parsed['type']})", lambda: STREAM_CHUNKS.validate_python(parsed))
    ok &= judge(f"agent images and skills: event {index} ({parsed['type']}, generated schema)", lambda: GENERATED_EVENTS.validate_python(parsed))
checked["responses"] += len(frames)
check("agent images and skills: image search and skill events valid by the generated schema",
      ok and GENERATED_ONLY <= set(kinds) and "response.skill.loaded" in kinds, str(kinds))

seen_types = set()
for model in ["fast", "low", "medium", "high", "xhigh", "fast@2026-10-16.0", "fast-search", "pro-search", "deep-research", "openai/gpt-5-mini"]:
    key = "model" if "/" in model else "preset" if model.endswith(("-search", "-research")) else "effort"
    input_items = [{"type": "message", "role": message["role"], "content": message["content"]} for message in MESSAGES]
    for extras in [{}, {"max_output_tokens": 30}]:
        body = {key: model, "input": input_items, **extras}
        label = f"agent {model}{' limited' if extras else ''}"
        frames = sse("/v1/agent", {**body, "stream": True})
        ok = True
        for index, (event, data) in enumerate(frames):
            parsed = json.loads(data)
            seen_types.add(parsed.get("type"))
            ok &= judge(f"{label}: event {index} ({parsed.get('type')})", lambda: STREAM_CHUNKS.validate_python(as_judged(parsed)))
            ok &= judge(f"{label}: event {index} ({parsed.get('type')}, generated schema)", lambda: GENERATED_EVENTS.validate_python(as_judged(parsed)))
            ok &= event == parsed.get("type") and isinstance(parsed.get("sequence_number"), int)
        checked["responses"] += len(frames)
        check(f"{label}: stream ({len(frames)} events) valid, event names match types", ok)
        terminal = json.loads(frames[-1][1]) if frames else {}
        if extras:
            check(f"{label}: a cut answer ends response.incomplete, reason max_output_tokens",
                  terminal.get("type") == "response.incomplete" and terminal["response"]["status"] == "incomplete"
                  and terminal["response"]["incomplete_details"]["reason"] == "max_output_tokens", str(terminal)[:200])
        else:
            check(f"{label}: a whole answer ends response.completed", terminal.get("type") == "response.completed", str(terminal)[:200])
        reply = client.post("/v1/agent", json=body)
        checked["responses"] += 1
        check(f"{label}: body valid", reply.status_code == 200 and judge(f"{label}: body", lambda: ResponseCreateResponse.model_validate(as_judged(reply.json())))
              and judge(f"{label}: body (generated schema)", lambda: ResponsesResponseOutput.model_validate(as_judged(reply.json()))))
        if model in ("medium", "high", "xhigh", "pro-search", "deep-research"):
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
reply = client.post("/v1/agent", json={"effort": "turbo", "input": QUESTION})
check("agent: an unknown effort is a 400 with an ErrorInfo", reply.status_code == 400 and judge("agent effort body", lambda: ErrorInfo.model_validate(reply.json()["error"])), reply.text[:200])
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

# ---- tool calling and attachments: what the simulator emits
WEATHER = {"type": "function", "name": "get_weather", "description": "The current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
ASK_WEATHER = [{"type": "message", "role": "user", "content": "What's the weather in Paris?"}]
body = {"model": "openai/gpt-5-mini", "input": ASK_WEATHER, "tools": [WEATHER]}
frames = sse("/v1/agent", {**body, "stream": True})
ok = True
items = []
for index, (event, data) in enumerate(frames):
    parsed = json.loads(data)
    ok &= judge(f"agent tool call: event {index} ({parsed.get('type')})", lambda: STREAM_CHUNKS.validate_python(parsed))
    ok &= judge(f"agent tool call: event {index} (generated schema)", lambda: GENERATED_EVENTS.validate_python(parsed))
    if parsed.get("type") == "response.output_item.done":
        items.append(parsed["item"])
checked["responses"] += len(frames)
final = json.loads(frames[-1][1])
check("agent tool call: stream valid, one function_call item, status requires_action",
      ok and len(items) == 1 and judge("agent tool call: item", lambda: FunctionCallOutputItem.model_validate(items[0]))
      and json.loads(items[0]["arguments"]) == {"city": "Paris"} and final["response"]["status"] == "requires_action", json.dumps(final)[:300])
reply = client.post("/v1/agent", json=body)
checked["responses"] += 1
check("agent tool call: body valid, the call in its output",
      reply.status_code == 200 and judge("agent tool call: body", lambda: ResponseCreateResponse.model_validate(reply.json()))
      and reply.json()["output"][0]["type"] == "function_call", reply.text[:300])
call = reply.json()["output"][0]
replayed = ASK_WEATHER + [{"type": "function_call", "call_id": call["call_id"], "name": call["name"], "arguments": call["arguments"]},
                          {"type": "function_call_output", "call_id": call["call_id"], "output": '{"temperature_c": 18}'}]
reply = client.post("/v1/agent", json={**body, "input": replayed})
checked["responses"] += 1
answer = reply.json()["output"][-1]["content"][0]["text"] if reply.status_code == 200 else ""
check("agent tool result: answered, valid, quoting the result",
      reply.status_code == 200 and judge("agent tool result: body", lambda: ResponseCreateResponse.model_validate(reply.json()))
      and answer.startswith('get_weather returned {"temperature_c": 18}.'), answer[:200])

PNG = "data:image/png;base64,iVBORw0KGgo="
reply = client.post("/v1/agent", json={"model": "openai/gpt-5-mini", "input": [{"type": "message", "role": "user", "content": [
    {"type": "input_text", "text": "What is this?"}, {"type": "input_image", "image_url": PNG}]}]})
checked["responses"] += 1
check("agent image: accepted and acknowledged", reply.status_code == 200 and "You attached an image (image/png, 8 bytes)" in reply.text, reply.text[:200])
reply = client.post("/v1/agent", json={"model": "openai/gpt-5-mini", "input": [{"type": "message", "role": "user", "content": [
    {"type": "input_image", "image_url": "data:image/tiff;base64,AAAA"}]}]})
check("agent image: an unsupported format is a 400 with an ErrorInfo", reply.status_code == 400 and judge("agent image 400", lambda: ErrorInfo.model_validate(reply.json()["error"])), reply.text[:200])
reply = client.post("/chat/completions", json={"model": "sonar-pro", "messages": [{"role": "user", "content": [
    {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": PNG}}]}]})
checked["responses"] += 1
check("sonar image: accepted, acknowledged, body valid", reply.status_code == 200 and "You attached an image" in reply.text and judge("sonar image body", lambda: StreamChunk.model_validate(reply.json())), reply.text[:200])
reply = client.post("/chat/completions", json={"model": "sonar", "messages": [{"role": "user", "content": "weather?"}], "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]})
check("sonar: tools for a Sonar model are the 400 the service answers", reply.status_code == 400 and "Tool calling is not supported" in reply.text, reply.text[:200])

# The official openai client at the compatible endpoint: its stream helper reassembles the
# call from our fragments, and each chunk is a valid ChatCompletionChunk.
compatible = OpenAI(api_key="any", base_url=COMPATIBLE_URL)
chat_tools = [{"type": "function", "function": {key: WEATHER[key] for key in ("name", "description", "parameters")}}]
chat_messages = [{"role": "user", "content": "What's the weather in Paris?"}]
raw = list(compatible.chat.completions.create(model="gpt-5-mini", messages=chat_messages, tools=chat_tools, stream=True))
checked["responses"] += len(raw)
fragments = sum(len(chunk.choices[0].delta.tool_calls or []) for chunk in raw if chunk.choices)
check("compatible: the call streams in several fragments, each chunk a valid ChatCompletionChunk",
      fragments >= 3 and all(judge("compatible chunk", lambda: ChatCompletionChunk.model_validate(chunk.model_dump())) for chunk in raw), str(fragments))
with compatible.chat.completions.stream(model="gpt-5-mini", messages=chat_messages, tools=chat_tools) as stream:
    completion = stream.get_final_completion()
assembled = completion.choices[0].message.tool_calls or []
check("compatible: openai's stream helper reassembles one whole call",
      len(assembled) == 1 and assembled[0].function.name == "get_weather" and json.loads(assembled[0].function.arguments) == {"city": "Paris"}
      and completion.choices[0].finish_reason == "tool_calls", str(assembled))
follow = compatible.chat.completions.create(model="gpt-5-mini", messages=chat_messages + [
    {"role": "assistant", "content": None, "tool_calls": [{"id": assembled[0].id, "type": "function", "function": {"name": "get_weather", "arguments": assembled[0].function.arguments}}]},
    {"role": "tool", "tool_call_id": assembled[0].id, "content": '{"temperature_c": 18}'}], tools=chat_tools)
checked["responses"] += 1
check("compatible: the result is answered", (follow.choices[0].message.content or "").startswith('get_weather returned {"temperature_c": 18}.'), str(follow.choices[0].message.content)[:200])

# ---- background runs, read again by the official SDK's own client
from perplexity import Perplexity

sdk = Perplexity(api_key=KEY, base_url=URL, max_retries=0)
first = []
run_id = None
with sdk.responses.create(effort="fast", input=QUESTION, stream=True, background=True) as events:
    for event in events:
        first.append(event)
        run_id = run_id or getattr(getattr(event, "response", None), "id", None)
        if event.sequence_number >= 9:
            break  # the connection is dropped here, as a cut would
rest = list(sdk.responses.retrieve(run_id, stream=True, starting_after=9))
checked["responses"] += len(first) + len(rest)
numbers = [event.sequence_number for event in first + rest]
text = "".join(getattr(event, "delta", "") or "" for event in first + rest if event.type == "response.output_text.delta")
final = sdk.responses.retrieve(run_id)
checked["responses"] += 1
check("background: the SDK's retrieve(stream=True, starting_after=N) continues the run after N, exactly",
      run_id is not None and numbers == list(range(1, len(numbers) + 1)) and rest[0].sequence_number == 10
      and rest[-1].type == "response.completed" and final.status == "completed" and final.output_text == text,
      f"{numbers[:12]} {final.status if final else None}")
missing = client.get(f"/v1/responses/{run_id}x", params={"stream": "true", "starting_after": 1})
check("background: an unknown or expired run is a 404 with an ErrorInfo",
      missing.status_code == 404 and judge("404 body", lambda: ErrorInfo.model_validate(missing.json()["error"])), missing.text[:200])

# ---- Sonar async jobs, judged by the generated schema's own models
def job(idempotency_key):
    reply = client.post("/async/chat/completions", json={"request": {"model": "sonar-deep-research", "messages": [{"role": "user", "content": QUESTION}]}, "idempotency_key": idempotency_key})
    checked["responses"] += 1
    return reply.json()
created, again = job("contract-job-1"), job("contract-job-1")
reads = [client.get(f"/async/chat/completions/{created.get('id')}").json() for _ in range(2)]
checked["responses"] += 2
listed = client.get("/async/chat/completions").json()
checked["responses"] += 1
check("async: a job is CREATED, IN_PROGRESS, then COMPLETED with a chat completion, each an AsyncApiChatCompletionsResponseOutput",
      all(judge(f"async job {index}", lambda body=body: generated.AsyncApiChatCompletionsResponseOutput.model_validate(body)) for index, body in enumerate([created] + reads))
      and [created["status"]] + [read["status"] for read in reads] == ["CREATED", "IN_PROGRESS", "COMPLETED"]
      and judge("async job's completion", lambda: generated.CompletionResponseOutput.model_validate(reads[1]["response"])),
      str([created.get("status")] + [read.get("status") for read in reads]))
check("async: a repeated idempotency key gets the same job; the list is a ListAsyncApiChatCompletionsResponseOutput",
      again.get("id") == created.get("id") and judge("async list", lambda: generated.ListAsyncApiChatCompletionsResponseOutput.model_validate(listed)),
      f"{again.get('id')} {created.get('id')}")

# ---- requests: what our client sends
lines = [json.loads(line) for line in open(REQUESTS) if line.strip()]
check("requests: the client's matrix was recorded", len(lines) >= 20, str(len(lines)))
kinds = set()
for index, line in enumerate(lines):
    endpoint, body = line["endpoint"], line["body"]
    if endpoint.endswith("/cancel") or endpoint.startswith(("/v1/responses/", "/async/chat/completions/")):
        continue  # a cancel's empty body; a poll of a background run or an async job (a GET, no body)
    if endpoint == "/async/chat/completions":
        # An async job: the envelope by the generated schema (strict), the Sonar request it
        # carries as any chat completion request.
        inner = body.get("request") or {}
        label = f"request {index} {endpoint} {inner.get('model')}"
        ok = judge(f"{label} (generated schema)", lambda: generated.AsyncApiChatCompletionsRequestInput.model_validate(body))
        ok &= judge(label, lambda: materialize(ADAPTERS["/chat/completions"].validate_python(inner)))
        extra = set(inner) - known_keys(PARAMS["/chat/completions"])
        ok &= not extra and isinstance(body.get("idempotency_key"), str) and inner.get("stream") is not True
        check(label, ok and line["status"] == 200, f"unknown keys {sorted(extra)}" if extra else f"status {line['status']}")
        checked["requests"] += 1
        kinds.add("async job")
        continue
    adapter = ADAPTERS.get(endpoint)
    if adapter is None:
        check(f"request {index}: endpoint {endpoint} is one the SDK models", False)
        continue
    label = f"request {index} {endpoint} {body.get('model') or body.get('effort') or body.get('preset') or ''} stream={line['stream']}"
    parts = [part for item in body.get("input", []) if isinstance(item, dict) and isinstance(item.get("content"), list) for part in item["content"]]
    if any(part.get("type") == "input_file" for part in parts):
        # The per-type module lists input_text and input_image only; the generated schema
        # (below) has input_file, and judges this request alone.
        ok = True
        kinds.add("agent input_file")
    elif any(tool.get("type") == "image_search" for tool in body.get("tools", [])):
        # Nor does its tool union have image_search: the generated schema judges it alone.
        ok = True
        kinds.add("agent image_search tool")
    else:
        ok = judge(label, lambda: materialize(adapter.validate_python(body)))
    extra = set(body) - known_keys(PARAMS[endpoint]) - ALLOWED_EXTRA.get(endpoint, set())
    if endpoint == "/v1/agent":
        ok &= judge(f"{label} (generated schema)", lambda: ResponsesRequestInput.model_validate(body))
    if line.get("compatible"):
        kinds.add("compatible")
    if body.get("tools"):
        kinds.add(f"{endpoint} tools")
    ok &= not extra
    check(label, ok and line["status"] == 200, f"unknown keys {sorted(extra)}" if extra else f"status {line['status']}")
    checked["requests"] += 1
    kinds.add(endpoint)
check("requests: both APIs, search, async jobs, tools on both, files and the compatible endpoint were judged",
      kinds >= set(PARAMS) | {"async job", "/v1/agent tools", "/chat/completions tools", "agent input_file", "agent image_search tool", "compatible"}, str(kinds))
agent_bodies = [line["body"] for line in lines if line["endpoint"] == "/v1/agent" and line["body"]]
engines = {(body.get("model") or body.get("effort") or body.get("preset")) for body in agent_bodies}
check("requests: Sonar names reach the Agent API mapped (never as a model), grounded by web_search",
      not any(str(engine).startswith("sonar") for engine in engines)
      and any(body.get("model") == "perplexity/sonar" and {"type": "web_search"} in body.get("tools", []) for body in agent_bodies),
      str(sorted(map(str, engines))))
check("requests: an anthropic/* model carries max_output_tokens",
      all("max_output_tokens" in body for body in agent_bodies if str(body.get("model", "")).startswith("anthropic/")), "")

print(f"contract: {checked['responses']} responses and {checked['requests']} requests judged by the SDK's types; {len(failures)} failed")
sys.exit(1 if failures else 0)
