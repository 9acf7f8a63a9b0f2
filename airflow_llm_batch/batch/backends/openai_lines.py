"""The usual line of an OpenAI output file, read in half the time: a chat completion that succeeded.

``parse_result_line`` (``openai.py``) reads any line into dicts with orjson and then picks the few
fields it needs. Nearly every line of a big job has the same shape, so :func:`succeeded_chat_line`
decodes that shape straight into the fields (msgspec, typed). It answers only when it is sure to
agree with the general path: every field of the line must be one this module declares, with the
type declared (integers within 64 bits, as orjson reads them exactly), so that the general path
would read the same values. Anything else (an error line, a new field, a tool call, logprobs)
returns ``None`` and goes the general way.

:func:`read_chat_block` does the same for a block of lines at once, into columns (the Results
task's columnar path); the lines it cannot read that way it hands whole to the general reader.
Its loop repeats the field walk of :func:`succeeded_chat_line` inline (a call per line cost more
than the walk); ``tests/bench/test_fast_paths_agree.py`` holds both to the general path.

Shapes: ``reference/provider-apis.md`` section 2.3 and OpenAI's ``chat.completion`` object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import msgspec

from airflow_llm_batch.batch.records import RawOutcome
from airflow_llm_batch.batch.row_blocks import OutcomeBlock

# ``gc=False``: the decoded parts hold only strings, numbers and each other, never a cycle, so the
# garbage collector need not track the seven objects each line makes.
_Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_Empty = Annotated[list[Any], msgspec.Meta(max_length=0)]


class _Message(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    annotations: _Empty | None = None
    tool_calls: None = None
    function_call: None = None
    audio: None = None


class _Choice(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    index: _Int | None = None
    message: _Message | None = None
    logprobs: None = None
    finish_reason: str | None = None


class _PromptDetails(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    cached_tokens: _Int | None = None
    audio_tokens: _Int | None = None


class _CompletionDetails(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    reasoning_tokens: _Int | None = None
    audio_tokens: _Int | None = None
    accepted_prediction_tokens: _Int | None = None
    rejected_prediction_tokens: _Int | None = None


class _Usage(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    prompt_tokens: _Int | None = None
    completion_tokens: _Int | None = None
    total_tokens: _Int | None = None
    prompt_tokens_details: _PromptDetails | None = None
    completion_tokens_details: _CompletionDetails | None = None


class _Completion(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    id: str | None = None
    object: str | None = None
    created: _Int | None = None
    model: str | None = None
    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    service_tier: str | None = None
    system_fingerprint: str | None = None


class _Response(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    status_code: _Int | None = None
    request_id: str | None = None
    body: _Completion | None = None


class _Line(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, gc=False):
    id: str | None = None
    custom_id: str
    response: _Response | None = None
    error: None = None


_decode = msgspec.json.Decoder(_Line).decode


def succeeded_chat_line(line: str | bytes) -> RawOutcome | None:
    """The outcome of a chat line with HTTP status 200 in the usual shape, else ``None``."""
    try:
        record = _decode(line)
    except (msgspec.DecodeError, ValueError, RecursionError):
        return None
    response = record.response
    if response is None or response.status_code != 200:
        return None
    try:
        body = response.body
        choice = body.choices[0]  # type: ignore[union-attr,index]
        message = choice.message
        usage = body.usage  # type: ignore[union-attr]
        text, refusal = message.content, message.refusal  # type: ignore[union-attr]
        input_tokens, output_tokens = usage.prompt_tokens, usage.completion_tokens  # type: ignore[union-attr]
    except (AttributeError, IndexError, TypeError):
        return None  # a part is null or empty: rare, and the general path knows what that means
    finish_reason = choice.finish_reason
    if finish_reason == "content_filter" or refusal:
        return None  # filtered: rare, and worded by the general path
    return RawOutcome(
        custom_id=record.custom_id,
        succeeded=True,
        text=text,
        model=body.model,  # type: ignore[union-attr]
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        finish_reason=finish_reason,
    )


def read_chat_block(lines: list[bytes], read_one: Callable[[bytes], RawOutcome]) -> OutcomeBlock:
    """Lines of an output or error file as columns: the usual lines as :func:`succeeded_chat_line`
    reads them, every other line through ``read_one`` (the general reader) into ``others``.

    One loop with the fields read inline: a call per line (or ``operator.attrgetter`` with dotted
    paths) cost more than the decoding.
    """
    custom_ids: list[str] = []
    texts: list[str | None] = []
    models: list[str | None] = []
    input_tokens: list[int | None] = []
    output_tokens: list[int | None] = []
    finish_reasons: list[str | None] = []
    others: dict[int, RawOutcome] = {}
    add_id, add_text, add_model = custom_ids.append, texts.append, models.append
    add_input, add_output, add_finish = input_tokens.append, output_tokens.append, finish_reasons.append
    # (Decode errors, and a part that is null or empty: the general path knows what that means.)
    decode, unusual = _decode, (msgspec.DecodeError, ValueError, RecursionError, AttributeError, IndexError, TypeError)
    for line in lines:
        try:
            record = decode(line)
            response = record.response
            if response.status_code == 200:  # type: ignore[union-attr]
                body = response.body  # type: ignore[union-attr]
                choice = body.choices[0]  # type: ignore[union-attr,index]
                message = choice.message
                usage = body.usage  # type: ignore[union-attr]
                text, refusal, finish_reason = message.content, message.refusal, choice.finish_reason  # type: ignore[union-attr]
                prompt, completion = usage.prompt_tokens, usage.completion_tokens  # type: ignore[union-attr]
                if not refusal and finish_reason != "content_filter":
                    add_id(record.custom_id)
                    add_text(text)
                    add_model(body.model)  # type: ignore[union-attr]
                    add_input(prompt)
                    add_output(completion)
                    add_finish(finish_reason)
                    continue
        except unusual:
            pass
        outcome = read_one(line)
        others[len(custom_ids)] = outcome
        add_id(outcome.custom_id)
        add_text(None)
        add_model(None)
        add_input(None)
        add_output(None)
        add_finish(None)
    return OutcomeBlock(custom_ids, texts, models, input_tokens, output_tokens, finish_reasons, others)
