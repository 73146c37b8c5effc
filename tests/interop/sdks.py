"""The official `openai` and `perplexityai` SDKs against the running simulator.

Environment: SIM_URL (base URL), SIM_KEY (a working key), SIM_LIMITED_KEY (a key the
simulator always rate-limits), SIM_EXPECTED (JSON: {"sonar": text, "agent": text}).
Prints one line per check and exits non-zero if any failed.
"""
import json
import os
import sys

import openai
import perplexity
from openai import OpenAI
from perplexity import Perplexity

URL = os.environ["SIM_URL"]
KEY = os.environ["SIM_KEY"]
LIMITED = os.environ["SIM_LIMITED_KEY"]
EXPECTED = json.loads(os.environ["SIM_EXPECTED"])
QUESTION = "Explain quantum computing"
AGENT_MODEL = "openai/gpt-5-mini"
MESSAGES = [{"role": "user", "content": QUESTION}]

failures = []


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + detail}")
    if not ok:
        failures.append(name)


def expect_error(name, error_type, call):
    try:
        call()
    except error_type as error:
        check(name, True)
        return error
    except Exception as error:  # noqa: BLE001 - report what came instead
        check(name, False, f"got {type(error).__name__}: {error}")
        return None
    check(name, False, "no error raised")
    return None


def differs(got, want):
    return f"got {len(got)} chars {got[:60]!r}..., want {len(want)} chars {want[:60]!r}..."


# ---- openai SDK
client = OpenAI(base_url=URL, api_key=KEY, max_retries=0)

stream = client.chat.completions.create(model="sonar", messages=MESSAGES, stream=True)
text = "".join((chunk.choices[0].delta.content or "") for chunk in stream if chunk.choices)
check("openai chat.completions stream", text == EXPECTED["sonar"], differs(text, EXPECTED["sonar"]))

completion = client.chat.completions.create(model="sonar", messages=MESSAGES)
text = completion.choices[0].message.content
check("openai chat.completions", text == EXPECTED["sonar"], differs(text or "", EXPECTED["sonar"]))
check("openai chat.completions usage", completion.usage.total_tokens > 0, str(completion.usage))

events = list(client.responses.create(model=AGENT_MODEL, input=QUESTION, stream=True))
text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
check("openai responses stream", text == EXPECTED["agent"], differs(text, EXPECTED["agent"]))
numbers = [event.sequence_number for event in events]
check("openai responses sequence numbers", numbers == sorted(numbers) and len(set(numbers)) == len(numbers), str(numbers))
check("openai responses completed", events[-1].type == "response.completed", events[-1].type)

response = client.responses.create(model=AGENT_MODEL, input=QUESTION)
check("openai responses", response.output_text == EXPECTED["agent"], differs(response.output_text, EXPECTED["agent"]))

error = expect_error(
    "openai 400 BadRequestError",
    openai.BadRequestError,
    lambda: client.chat.completions.create(model="not-a-model", messages=MESSAGES),
)
if error is not None:
    check("openai 400 message", "Invalid model" in str(error), str(error))
expect_error(
    "openai 401 AuthenticationError",
    openai.AuthenticationError,
    lambda: OpenAI(base_url=URL, api_key="wrong-key", max_retries=0).chat.completions.create(model="sonar", messages=MESSAGES),
)
error = expect_error(
    "openai 429 RateLimitError",
    openai.RateLimitError,
    lambda: OpenAI(base_url=URL, api_key=LIMITED, max_retries=0).chat.completions.create(model="sonar", messages=MESSAGES),
)
if error is not None:
    check("openai 429 retry-after", error.response.headers.get("retry-after") == "1", str(error.response.headers))

# ---- perplexityai SDK
client = Perplexity(base_url=URL, api_key=KEY, max_retries=0)

stream = client.chat.completions.create(model="sonar", messages=MESSAGES, stream=True)
chunks = list(stream)
text = "".join((chunk.choices[0].delta.content or "") for chunk in chunks if chunk.choices and chunk.choices[0].delta)
check("perplexityai chat.completions stream", text == EXPECTED["sonar"], differs(text, EXPECTED["sonar"]))
last = chunks[-1]
check("perplexityai stream done chunk", last.choices[0].finish_reason == "stop", str(last.choices[0].finish_reason))
check("perplexityai stream sources", len(last.search_results or []) >= 3, str(last.search_results))

completion = client.chat.completions.create(model="sonar", messages=MESSAGES)
text = completion.choices[0].message.content
check("perplexityai chat.completions", text == EXPECTED["sonar"], differs(str(text), EXPECTED["sonar"]))
check("perplexityai citations", len(completion.citations or []) >= 3, str(completion.citations))

expect_error(
    "perplexityai 400 BadRequestError",
    perplexity.BadRequestError,
    lambda: client.chat.completions.create(model="not-a-model", messages=MESSAGES),
)
expect_error(
    "perplexityai 401 AuthenticationError",
    perplexity.AuthenticationError,
    lambda: Perplexity(base_url=URL, api_key="wrong-key", max_retries=0).chat.completions.create(model="sonar", messages=MESSAGES),
)
expect_error(
    "perplexityai 429 RateLimitError",
    perplexity.RateLimitError,
    lambda: Perplexity(base_url=URL, api_key=LIMITED, max_retries=0).chat.completions.create(model="sonar", messages=MESSAGES),
)

print(f"interop: {len(failures)} failed" if failures else "interop: all checks passed")
sys.exit(1 if failures else 0)
