"""Settings, read once from the environment (and `.env`) and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting of the service. Nothing else reads the environment."""

    model_config = SettingsConfigDict(
        env_prefix="BULKOPS_", env_file=".env", extra="ignore", populate_by_name=True
    )

    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    # The role the API and the workers act as: row-level security applies to it. It must
    # exist: the migrations create it, and grant it to their user, under this default name.
    app_role: str = "bulkops_app"
    data_dir: Path = Path(".bulkops-dev")
    # Where files go: s3://BUCKET/PREFIX, gs://…, az://… or file:///path (see
    # bulkops.storage). Unset: `bulkops dev` and the tests start an embedded S3 store, and
    # the other commands use a running `bulkops dev`'s, else the folder `DATA_DIR/files`.
    storage_url: str | None = None
    # Options of the store (endpoint, access_key_id, secret_access_key, region,
    # allow_http) when they are not the store's standard variables, as JSON.
    storage_options: dict[str, str] = {}
    dev: bool = False
    allowed_origins: list[str] = []
    # Sign-in with an OpenID Connect provider: bearer JWTs it signs are accepted besides API
    # tokens when issuer, audience and JWKS URL are all set.
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_jwks_url: str | None = None
    # The claim naming the caller's tenant (its name, as `bulkops token create` takes it)
    # and the one holding its scopes (space-separated, or a list).
    jwt_tenant_claim: str = "tenant"
    jwt_scope_claim: str = "scope"
    # Clock skew tolerated on exp and nbf.
    jwt_leeway_seconds: float = Field(default=30.0, ge=0)
    # Keys are fetched again after this long; a token naming a key not in the set fetches
    # them at once, but at most once per `jwt_jwks_min_refresh_seconds`.
    jwt_jwks_cache_seconds: float = Field(default=600.0, gt=0)
    jwt_jwks_min_refresh_seconds: float = Field(default=30.0, ge=0)
    jwt_jwks_timeout_seconds: float = Field(default=5.0, gt=0)
    public_url: str = "http://127.0.0.1:8000"

    pool_min_size: int = 2
    pool_max_size: int = 10

    max_ids_per_selection: int = 1_000_000
    max_request_bytes: int = 64 * 1024 * 1024
    # Uploads (CSV/JSONL files) are multipart requests, limited separately.
    max_upload_bytes: int = 1024 * 1024 * 1024
    max_query_depth: int = 12
    max_aliases: int = 30
    # What one query document may cost, refused before it is parsed (length, tokens) or
    # validated (fields): the worst document within them parses and validates in about
    # 0.2 s, and real ones stay far below (GraphiQL's introspection query: 1.6 kB, 183
    # tokens, 239 fields). See bulkops.graphql.limits.
    max_query_bytes: int = 100_000
    max_query_tokens: int = 5_000
    max_query_fields: int = 5_000
    max_subscriptions_per_connection: int = 50
    # Requests of one tenant (HTTP requests, websocket connections and subscriptions),
    # counted in Redis across every API process: at most `rate_limit_burst` in any second
    # and `rate_limit_per_second` on average over any minute. 0 turns that limit off.
    # A dashboard that polls and a script that submits bulk mutations and follows their
    # jobs stay far below; a loop that sends one request per product does not, and is
    # better off as one bulk mutation.
    rate_limit_burst: int = Field(default=200, ge=0)
    rate_limit_per_second: float = Field(default=50.0, ge=0)

    # Overrides every operation's own batch size when set (tuning, tests).
    batch_size: int | None = None
    slice_seconds: float = 5.0
    # A pause after every batch of a job, to go easy on a busy database.
    batch_pause_seconds: float = 0.0
    # A running job's lease; a job whose lease lapses (worker killed) is re-enqueued.
    lease_seconds: float = 10.0
    reconcile_every_seconds: int = 5
    max_running_jobs_per_tenant: int = 4
    quota_retry_seconds: float = 1.0
    job_retention_days: float = 7.0
    idempotency_hours: float = 24.0
    publish_interval: float = 0.2
    subscription_recheck_seconds: float = 5.0
    # Slices one worker process runs at once. A small job spends most of its time waiting
    # on Postgres and Redis round trips, so a few dozen overlap well on one process.
    worker_max_jobs: int = 12
    # How often an idle worker asks the queue for work (arq polls): a new job waits on
    # average half of it before a worker takes it.
    worker_poll_delay: float = 0.02
    # A worker serves its Prometheus metrics on this port when it is set (`bulkops worker
    # --metrics-port` overrides it). All interfaces by default: Prometheus scrapes from
    # another host or container, and the metrics name no tenant, job or item.
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    worker_metrics_host: str = "0.0.0.0"
    # Signs the download links of export files (HMAC-SHA256). Required in production, the
    # same on every API process; without it a key is generated once and kept in data_dir.
    signing_key: SecretStr | None = None
    # How long an export file's download link works; the file is removed after that.
    export_link_hours: float = 24.0
    # The bearer token `bulkops watch` sends when it is not given --token.
    token: SecretStr | None = None

    # Log lines are JSON, or readable text in dev mode; log_format overrides either way.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] | None = None
    # Each worker announces itself in Redis this often; a worker not heard from within
    # the TTL (a crash, a lost host) is no longer listed by `queueStatus`.
    worker_heartbeat_seconds: float = Field(default=5.0, gt=0)
    worker_heartbeat_ttl_seconds: float = Field(default=30.0, gt=0)

    # Outside calls. The AI provider: any OpenAI-compatible Chat Completions endpoint
    # (https://api.openai.com/v1, http://localhost:11434/v1 for Ollama, ...); without a
    # base URL, enrichProducts is refused with PROVIDER_NOT_CONFIGURED.
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_model: str = "gpt-4o-mini"
    # Shared by every worker (counted in Redis); None: no limit of that kind.
    llm_requests_per_second: float | None = Field(default=5.0, gt=0)
    llm_tokens_per_minute: int | None = Field(default=None, gt=0)
    # Calls in flight at once per worker process.
    llm_concurrency: int = Field(default=8, ge=1, le=256)
    llm_timeout_seconds: float = Field(default=60.0, gt=0)
    llm_max_retries: int = Field(default=5, ge=0, le=20)
    # Image downloads (fetchProductImages): per host, shared by every worker.
    fetch_requests_per_second_per_host: float = Field(default=10.0, gt=0)
    fetch_concurrency_per_host: int = Field(default=4, ge=1, le=256)
    fetch_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    fetch_timeout_seconds: float = Field(default=30.0, gt=0)
    fetch_max_retries: int = Field(default=3, ge=0, le=20)
    # Outbound calls to private, loopback and link-local addresses (image URLs, webhook
    # URLs) are refused unless this is set (a provider on localhost is configured by the
    # operator, not by a request, and is always allowed).
    allow_private_networks: bool = False
    # While a provider is down, a job holds its batch this long before it hands the
    # batch back to the queue (retried at the provider's next try).
    outside_outage_hold_seconds: float = Field(default=60.0, ge=0)
    # How long the AI provider's circuit stays open the first time it opens (calls stop
    # at once meanwhile); doubled each time it opens again while still down, up to 5 min.
    outside_circuit_open_seconds: float = Field(default=10.0, gt=0)

    # Webhooks. The waits before each retry of a delivery (seconds, each jittered by up to
    # a fifth either way, or longer when the receiver's Retry-After asks): about three days
    # in all, as Stripe and Svix do; after the last one the delivery has failed.
    webhook_retry_schedule: list[float] = [
        5,
        300,
        1800,
        7200,
        18000,
        36000,
        36000,
        36000,
        36000,
        36000,
        36000,
    ]
    # One attempt's time for connecting, sending and the answer.
    webhook_timeout_seconds: float = Field(default=15.0, gt=0)
    # How often each worker looks for due deliveries, and how many it sends at once.
    webhook_poll_seconds: float = Field(default=1.0, gt=0)
    webhook_concurrency: int = Field(default=32, ge=1, le=1024)
    # An endpoint none of whose deliveries has succeeded for this long is disabled.
    webhook_disable_after_hours: float = Field(default=120.0, gt=0)
    # After rotateWebhookSecret the previous secret signs too for this long.
    webhook_secret_overlap_hours: float = Field(default=24.0, ge=0)
    # Delivered and failed deliveries are kept this long in the delivery log.
    webhook_delivery_retention_days: float = Field(default=30.0, gt=0)

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_name(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def resolved_storage_url(self) -> str:
        if self.storage_url:
            return self.storage_url
        return (self.data_dir / "files").resolve().as_uri()
