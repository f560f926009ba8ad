"""enrichProducts: ask an AI provider (any OpenAI-compatible Chat Completions endpoint)
for a text per product, from a prompt template filled from the product, and write the
answer to its description, its name or one of its attributes."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, field_validator
from pydantic_core import PydanticCustomError

from bulkops.config import Settings
from bulkops.db.import_batch import MAX_NAME_LENGTH
from bulkops.errors import InputError
from bulkops.operations.base import (
    BatchContext,
    BatchOutcome,
    Thresholds,
    not_found_failures,
)
from bulkops.operations.calling import CallBatch, CallContext, CallingOperation
from bulkops.operations.enrich_template import EnrichInstructions, Target
from bulkops.outside import CallFailed, Limits, ProviderUnavailable, Usage

PROVIDER = "llm"
# A rough count of a prompt's tokens before the provider tells the real one: about four
# characters a token in English text.
CHARS_PER_TOKEN = 4
UNCONFIGURED_RETRY_SECONDS = 60.0
# A call's time budget, for all its attempts, in timeouts (at least Limits' default).
RETRY_BUDGET_TIMEOUTS = 2.5


class EnrichParams(BaseModel):
    instructions: EnrichInstructions
    # Stop starting calls once the run's tokens (in and out) reach this; None: no budget.
    max_total_tokens: int | None = None

    @field_validator("max_total_tokens")
    @classmethod
    def _budget(cls, value: int | None) -> int | None:
        if value is not None and value <= 0:
            raise PydanticCustomError(
                "INVALID_TOKEN_BUDGET", "maxTotalTokens is more than 0 when given."
            )
        return value


@dataclass(frozen=True)
class EnrichItem:
    """One product to ask for: its id and its filled-in prompt."""

    id: int
    prompt: str


def estimate_tokens(prompt: str, max_output_tokens: int) -> int:
    """What a call may cost at most, for the per-minute token budget before the call."""
    return len(prompt) // CHARS_PER_TOKEN + 1 + max_output_tokens


def current_value_sql(target: Target, key_param: str) -> str:
    """The target's current value as text, NULL or blank when it has none."""
    if target.column == "attributes":
        return f"p.attributes ->> {key_param}"
    return f"p.{target.column}"


def key_args(target: Target) -> list[str]:
    """The attribute key as the query's last parameter, when the target is one (a
    parameter the query does not use has no type, which PostgreSQL refuses)."""
    return [target.key] if target.key is not None else []


def new_value_sql(target: Target, text: str, key_param: str) -> str:
    if target.column == "attributes":
        return f"p.attributes || jsonb_build_object({key_param}, {text})"
    return text


class EnrichProducts(CallingOperation[EnrichParams, EnrichItem, str]):
    name = "enrichProducts"
    description = (
        "Ask the AI provider for a text per product (a prompt filled from the product) and "
        "write it to its description, name or attributes.KEY; products that already have "
        "a value there are skipped unless overwrite."
    )
    # Every item is a call of seconds: a request waits for a handful at most.
    thresholds = Thresholds(inline_threshold=10, inline_limit=50, batch_size=32)
    params_model = EnrichParams
    summary_description = (
        "Items are products: succeeded counts those given the provider's answer; skipped, "
        "those that already had a value (without overwrite), whose value the answer would "
        "not change, or that were not asked once the token budget was reached."
    )
    provider = PROVIDER

    def limits(self, settings: Settings) -> Limits:
        return Limits(
            requests_per_second=settings.llm_requests_per_second,
            tokens_per_minute=settings.llm_tokens_per_minute,
            concurrency=settings.llm_concurrency,
            timeout_seconds=settings.llm_timeout_seconds,
            max_retries=settings.llm_max_retries,
            # A slow model's timeout may pass the default time budget: a call that timed
            # out once still gets its second attempt.
            max_retry_seconds=max(
                Limits.max_retry_seconds, RETRY_BUDGET_TIMEOUTS * settings.llm_timeout_seconds
            ),
            open_seconds=settings.outside_circuit_open_seconds,
        )

    def check_configured(self, settings: Settings) -> None:
        if not settings.llm_base_url:
            raise InputError(
                "No AI provider is configured: set BULKOPS_LLM_BASE_URL (and "
                "BULKOPS_LLM_API_KEY if it needs one) for the API and the workers.",
                code="PROVIDER_NOT_CONFIGURED",
            )

    def stop_reason(self, params: EnrichParams, used: Usage) -> str | None:
        budget = params.max_total_tokens
        if budget is not None and used.tokens >= budget:
            return f"token budget of {budget} reached"
        return None

    async def read_items(
        self, ctx: BatchContext, params: EnrichParams, ids: list[int]
    ) -> CallBatch[EnrichItem]:
        instructions = params.instructions
        template, target = instructions.template, instructions.where
        rows = await ctx.conn.fetch(
            f"""SELECT p.id, p.name, p.brand, p.category, p.sku, p.description,
                       COALESCE((SELECT jsonb_object_agg(k, p.attributes -> k)
                                 FROM unnest($2::text[]) AS k WHERE p.attributes ? k),
                                '{{}}'::jsonb) AS attributes,
                       COALESCE(btrim({current_value_sql(target, "$3::text")}), '') <> ''
                         AS has_value
                FROM products p
                WHERE p.id = ANY($1::bigint[]) AND p.tenant_id = current_tenant_id()
                ORDER BY p.id""",
            ids,
            template.attribute_keys,
            *key_args(target),
        )
        items: list[EnrichItem] = []
        skipped = 0
        for r in rows:
            if r["has_value"] and not instructions.overwrite:
                skipped += 1
                continue
            items.append(EnrichItem(r["id"], template.fill(dict(r), r["attributes"])))
        errors = not_found_failures(ids, {r["id"] for r in rows})
        return CallBatch(items, BatchOutcome(skipped=skipped, failed=len(errors), errors=errors))

    async def call(self, calls: CallContext, params: EnrichParams, item: EnrichItem) -> str:
        settings = calls.settings
        instructions = params.instructions
        if not settings.llm_base_url:
            # The API that queued the job has a provider, this worker does not: wait for
            # an operator rather than fail every item.
            raise ProviderUnavailable(
                PROVIDER,
                "no AI provider configured on this worker (BULKOPS_LLM_BASE_URL)",
                next_try_at=time.time() + UNCONFIGURED_RETRY_SECONDS,
            )
        base_url = str(settings.llm_base_url).rstrip("/")
        limits = self.limits(settings)
        estimated = estimate_tokens(item.prompt, instructions.max_output_tokens)
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        response = await calls.outside.send_json(
            PROVIDER,
            limits,
            "POST",
            f"{base_url}/chat/completions",
            tenant_id=calls.tenant_id,
            usage=calls.usage,
            idempotency_key=calls.idempotency_key(item.id),
            headers={"Authorization": f"Bearer {key}"} if key else None,
            json={
                "model": instructions.model or settings.llm_model,
                "messages": [{"role": "user", "content": item.prompt}],
                "max_tokens": instructions.max_output_tokens,
            },
            tokens=estimated,
        )
        answer = read_answer(response.status_code, response.content)
        tokens_in, tokens_out = answer.tokens_in, answer.tokens_out
        if tokens_in is None or tokens_out is None:
            # A provider that does not report usage is counted by the same estimate.
            tokens_in = len(item.prompt) // CHARS_PER_TOKEN + 1
            tokens_out = len(answer.text or "") // CHARS_PER_TOKEN + 1
        calls.usage.tokens_in += tokens_in
        calls.usage.tokens_out += tokens_out
        await calls.outside.settle_tokens(
            PROVIDER, limits, estimated=estimated, actual=tokens_in + tokens_out
        )
        if answer.text is None:
            raise CallFailed(answer.problem, code="PROVIDER_BAD_ANSWER", status=answer.status)
        if instructions.where.column == "name" and len(answer.text) > MAX_NAME_LENGTH:
            raise CallFailed(
                f"The answer has {len(answer.text)} characters; a name has at most "
                f"{MAX_NAME_LENGTH}.",
                code="ANSWER_TOO_LONG",
            )
        return answer.text

    async def write_results(
        self, ctx: BatchContext, params: EnrichParams, done: list[tuple[EnrichItem, str]]
    ) -> BatchOutcome:
        if not done:
            return BatchOutcome()
        instructions = params.instructions
        target = instructions.where
        ids = [item.id for item, _ in done]
        current = f"COALESCE(btrim({current_value_sql(target, '$4::text')}), '')"
        new_value = new_value_sql(target, "a.answer", "$4::text")
        # The products are locked in id order, as every batch step locks them; one that
        # was given a value since it was read keeps it unless overwrite.
        row = await ctx.conn.fetchrow(
            f"""WITH locked AS (
                  SELECT id FROM products
                  WHERE id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
                  ORDER BY id FOR UPDATE),
                answers AS (
                  SELECT * FROM unnest($1::bigint[], $2::text[]) AS a(id, answer)),
                changed AS (
                  UPDATE products p SET {target.column} = {new_value}, updated_at = now()
                  FROM locked t JOIN answers a ON a.id = t.id
                  WHERE p.id = t.id AND ($3 OR {current} = '')
                    AND p.{target.column} IS DISTINCT FROM {new_value}
                  RETURNING p.id)
              SELECT ARRAY(SELECT id FROM locked) AS found,
                     ARRAY(SELECT id FROM changed ORDER BY id) AS changed""",
            ids,
            [text for _, text in done],
            instructions.overwrite,
            *key_args(target),
        )
        found: set[int] = set(row["found"])
        changed: list[int] = row["changed"]
        errors = not_found_failures(ids, found)
        return BatchOutcome(
            succeeded=len(changed),
            failed=len(errors),
            skipped=len(found) - len(changed),
            errors=errors,
            changed_ids=changed,
        )


@dataclass(frozen=True)
class Answer:
    """A Chat Completions answer: its text (None when there is none to use, with the
    problem), and the tokens the provider reported (None when it did not)."""

    text: str | None
    status: int
    problem: str = ""
    tokens_in: int | None = None
    tokens_out: int | None = None


def read_answer(status: int, body: bytes) -> Answer:
    """The text of the first choice of a Chat Completions response, stripped."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return Answer(None, status, "The provider's answer is not JSON.")
    if not isinstance(data, dict):
        return Answer(None, status, "The provider's answer is not a JSON object.")
    usage = data.get("usage")
    tokens_in = tokens_out = None
    if isinstance(usage, dict):
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if isinstance(prompt, int) and isinstance(completion, int):
            tokens_in, tokens_out = max(prompt, 0), max(completion, 0)
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return Answer(None, status, "The provider's answer has no choices.", tokens_in, tokens_out)
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):
        # Some providers answer content as parts: [{"type": "text", "text": ...}].
        content = "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    text = content.strip() if isinstance(content, str) else ""
    if not text:
        refusal = message.get("refusal") if isinstance(message, dict) else None
        problem = (
            f"The model refused: {refusal.strip()[:500]}"
            if isinstance(refusal, str) and refusal.strip()
            else "The provider's answer is empty."
        )
        return Answer(None, status, problem, tokens_in, tokens_out)
    return Answer(text, status, "", tokens_in, tokens_out)
