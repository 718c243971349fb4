"""One typed, frozen settings object, read once at start-up and passed down.

Environment variables use the prefix ``AGON_`` and one ``_`` between a section
and its field: ``AGON_HOME``, ``AGON_KAFKA_BOOTSTRAP``, ``AGON_LLM_BACKEND``,
``AGON_BROKER_PORT``. Nothing else in agon reads ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agon.errors import ConfigError

__all__ = ["GATEWAY_SLOT", "REPO_ROOT", "AgentSpec", "Settings"]

#: the supervisor's slot (and data directory) of the HTTP gateway: `agon worker gateway`
GATEWAY_SLOT = "gateway"

#: the checkout agon runs from (the local broker's Maven file lives under deploy/ there)
REPO_ROOT = Path(__file__).resolve().parent.parent


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    bootstrap: str = "127.0.0.1:9092"
    partitions: int = Field(4, ge=1, description="partitions of agon's shared topics (inboxes, requests)")
    # raw librdkafka options, passed through as they are to every confluent-kafka client
    extra: dict[str, str] = Field(default_factory=dict)

    def client_config(self, **overrides: Any) -> dict[str, Any]:
        """The librdkafka configuration of every confluent-kafka client agon makes."""
        return {"bootstrap.servers": self.bootstrap, "log_level": 3, **overrides, **self.extra}


class BrokerSettings(_Section):
    """The local single-node KRaft broker that `agon broker up` runs."""

    kafka_version: str = "4.3.1"
    host: str = "127.0.0.1"
    port: int = 9092
    controller_port: int = 9093
    heap: str = "768m"
    java: str = "java"
    mvn: str = "mvn"
    start_timeout_s: float = 90.0


class RegistrySettings(_Section):
    """The local schema registry that `agon registry up` runs: Apicurio Registry from Maven
    Central, its storage in Kafka (kafkasql), Confluent's API under /apis/ccompat/v7."""

    version: str = "3.3.3"
    host: str = "127.0.0.1"
    port: int = 8081  # Confluent Schema Registry's default
    management_port: int = 9081  # Quarkus' health and metrics interface (its default, 9000, is popular)
    heap: str = "384m"
    java: str = Field("", description="a Java 21+ executable; empty: JAVA_HOME, PATH, /usr/lib/jvm")
    mvn: str = "mvn"
    journal_topic: str = "_agon-registry-journal"  # one registry per broker, shared by namespaces
    start_timeout_s: float = 240.0

    @property
    def url(self) -> str:
        """The base URL of its Confluent-compatible API (what AGON_SCHEMA_REGISTRY_URL takes)."""
        return f"http://{self.host}:{self.port}/apis/ccompat/v7"


class GatewaySettings(_Section):
    """The HTTP gateway (`agon gateway`; `agon up` starts it): REST + Server-Sent Events in
    front of the agents, which it reaches only through Kafka (connectors/gateway/)."""

    enabled: bool = Field(True, description="`agon up` starts (and supervises) the gateway")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    #: hashed API keys: sha256 hex of the key -> its tenant (`agon keys add` prints one)
    api_keys: dict[str, str] = Field(default_factory=dict)
    keys_file: str = Field(
        "",
        description="more hashed keys, as `agon keys add` writes them; empty: <home>/gateway/keys.json",
    )
    rate_per_s: float = Field(10.0, gt=0, description="requests per second per key, sustained")
    burst: int = Field(40, ge=1, description="requests per key at once (the token bucket's size)")
    max_running: int = Field(10, ge=1, description="running debates per tenant at most")
    daily_tokens: int = Field(0, ge=0, description="model tokens per tenant per UTC day; 0: no budget")
    #: a tenant's own daily budget, over daily_tokens ('{"alice": 100000}'; 0: none)
    tenant_daily_tokens: dict[str, int] = Field(default_factory=dict)
    max_body_bytes: int = Field(16384, ge=1024, description="a request body at most")
    cors_origins: tuple[str, ...] = Field((), description="origins allowed by CORS; none: closed")
    cached_debates: int = Field(1000, ge=10, description="transcripts kept in memory for readers")
    start_wait_s: float = Field(10.0, ge=0, description="a DELETE waits this long for its debate to start")

    def budget(self, tenant: str) -> int:
        """The tenant's model tokens per UTC day; 0: no budget."""
        return self.tenant_daily_tokens.get(tenant, self.daily_tokens)

    def keys_path(self, home: Path) -> Path:
        return Path(self.keys_file) if self.keys_file else home / "gateway" / "keys.json"


class LLMSettings(_Section):
    backend: Literal["offline", "ollama"] = "offline"
    model: str = "offline"
    ollama_host: str = "http://127.0.0.1:11434"
    timeout_s: float = Field(
        20.0, gt=0, description="one model call, retries included; less than the turn deadline"
    )
    retries: int = Field(2, ge=0)
    stream: bool = Field(True, description="stream Ollama's answer: a runaway answer is cut off early")
    max_output_tokens: int = Field(300, ge=16, description="Ollama's num_predict")
    max_output_chars: int = Field(2000, ge=100, description="a turn's text is cut to this before Kafka")
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    context_tokens: int = Field(4096, ge=512, description="Ollama's num_ctx")
    keep_alive: str = Field("10m", description="how long Ollama keeps the model loaded after a call")
    prompt_budget_tokens: int = Field(
        2048, ge=512, description="a turn's prompt at most: newest turns verbatim, older condensed"
    )
    # the offline model's fault injection (demos, tests, benchmarks)
    offline_latency_s: float = 0.0
    offline_failure_rate: float = Field(0.0, ge=0.0, le=1.0)
    offline_malformed_rate: float = Field(0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _prompt_and_answer_fit_the_context(self) -> LLMSettings:
        if self.prompt_budget_tokens + self.max_output_tokens > self.context_tokens:
            raise ValueError(
                f"prompt_budget_tokens ({self.prompt_budget_tokens}) + max_output_tokens "
                f"({self.max_output_tokens}) exceed context_tokens ({self.context_tokens}): "
                "the model would silently drop the start of the prompt"
            )
        return self

    def ollama_options(self) -> dict[str, Any]:
        """The model options of every Ollama chat call."""
        return {
            "num_predict": self.max_output_tokens,
            "temperature": self.temperature,
            "num_ctx": self.context_tokens,
        }


class WorkerSettings(_Section):
    guarantee: Literal["at_least_once", "exactly_once"] = "exactly_once"
    web_port: int = Field(0, description="faust's web server port; 0 disables it")
    metrics_port: int = Field(0, description="first Prometheus port (see streams/metrics.py); 0: off")
    # a dead worker's partitions move after the session timeout: seconds, not faust's 60;
    # long enough for the supervisor to restart a killed worker under static membership
    session_timeout_s: float = 6.0
    heartbeat_interval_s: float = 0.5
    static_membership: bool = True
    # faust's commit timer: a backstop; a worker commits as soon as its input is idle, and under
    # load every commit_max_events events or commit_max_delay_s (streams/latency.py)
    commit_interval_s: float = 0.2
    commit_max_events: int = Field(500, ge=1)
    commit_max_delay_s: float = Field(0.05, gt=0)
    fetch_wait_s: float = Field(
        1.5,
        gt=0,
        description="the longest a fetch waits for records; shorter is faster but not safe yet "
        "(streams/latency.py, fix 4)",
    )
    commit_timeout_s: float = 15.0
    drain_timeout_s: float = Field(
        10.0, ge=0, description="a stopping debater waits this long for its model calls in flight"
    )
    turn_timeout_s: float = 30.0
    turn_attempts: int = 3
    max_llm_in_flight: int = Field(
        0,
        ge=0,
        description="model calls a debater worker makes at once; 0: sized by memory (llm_slots)",
    )


class AutoscaleSettings(_Section):
    """Lag-based autoscaling (``agon up --autoscale``): KEDA's Kafka scaler parameters, in
    snake case, so that local supervision and Kubernetes share them (streams/autoscale.py)."""

    lag_threshold: int = Field(10, ge=1, description="records pending per worker (KEDA lagThreshold)")
    min_replica_count: int = Field(1, ge=1, description="workers per agent at least (KEDA minReplicaCount)")
    max_replica_count: int = Field(
        0, ge=0, description="workers per agent at most; 0: the inbox's partitions (KEDA maxReplicaCount)"
    )
    polling_interval_s: float = Field(1.0, gt=0, description="how often lag is read (KEDA pollingInterval)")
    scale_down_stabilization_s: float = Field(
        30.0,
        ge=0,
        description="a count falls only to the highest recommendation of this window "
        "(the HPA's scaleDown stabilizationWindowSeconds)",
    )


class HistorySettings(_Section):
    """How long what an ended debate leaves behind is kept (nothing grows with history)."""

    marker_retention_s: float = Field(
        7 * 86400.0,
        gt=0,
        description="an ended debate's idempotency marker: a redelivered request is ignored",
    )
    topic_retention_s: float = Field(7 * 86400.0, gt=0, description="retention.ms of each debate's topic")
    topic_delete_after_s: float = Field(
        86400.0, ge=0, description="a debate's topic is deleted this long after the debate ended"
    )
    tombstone_retention_s: float = Field(
        600.0,
        gt=0,
        description="delete.retention.ms of the changelogs: how long a deleted row's tombstone stays",
    )

    @model_validator(mode="after")
    def _markers_outlive_topics(self) -> HistorySettings:
        if self.marker_retention_s < self.topic_delete_after_s:
            raise ValueError("marker_retention_s must be at least topic_delete_after_s")
        return self


class AgentSpec(_Section):
    """One agent of the roster: its role module, and for debaters a stance, persona and model."""

    name: str
    role: str
    stance: Literal["FOR", "AGAINST"] | None = None
    persona: str = ""
    model: str | None = None  # None: the LLM settings' model


DEFAULT_ROSTER = (
    AgentSpec(name="moderator", role="moderator"),
    AgentSpec(
        name="team-a",
        role="debater",
        stance="FOR",
        persona="An economist who has studied how past waves of automation created new work.",
    ),
    AgentSpec(
        name="team-b",
        role="debater",
        stance="AGAINST",
        persona="A labour researcher who documents the workers that automation leaves behind.",
    ),
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AGON_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        frozen=True,
        extra="ignore",
    )

    home: Path = Path(".agon")
    namespace: str = Field("agon", pattern=r"^[A-Za-z0-9_-]+$", description="prefix of every topic and group")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    kafka: KafkaSettings = KafkaSettings()
    broker: BrokerSettings = BrokerSettings()
    #: a Confluent-compatible schema registry: events are then written in Confluent's wire
    #: format (magic 0, schema id) and read in both; empty: Avro single-object encoding
    schema_registry_url: str = ""
    registry: RegistrySettings = RegistrySettings()
    llm: LLMSettings = LLMSettings()
    worker: WorkerSettings = WorkerSettings()
    history: HistorySettings = HistorySettings()
    autoscale: AutoscaleSettings = AutoscaleSettings()
    gateway: GatewaySettings = GatewaySettings()
    agents: tuple[AgentSpec, ...] = DEFAULT_ROSTER

    @model_validator(mode="after")
    def _calls_end_before_deadlines(self) -> Settings:
        if self.llm.timeout_s >= self.worker.turn_timeout_s:
            raise ValueError(
                f"llm.timeout_s ({self.llm.timeout_s:g}) must be less than worker.turn_timeout_s "
                f"({self.worker.turn_timeout_s:g}): a model call must fail before the moderator "
                "gives up on its turn (set AGON_LLM_TIMEOUT_S lower, or AGON_WORKER_TURN_TIMEOUT_S higher)"
            )
        return self

    @model_validator(mode="after")
    def _no_agent_named_like_the_gateway(self) -> Settings:
        if any(a.name == GATEWAY_SLOT for a in self.agents):
            raise ValueError(f"no agent may be named {GATEWAY_SLOT!r}: the supervisor runs the gateway so")
        return self

    @property
    def supervised(self) -> list[str]:
        """What a supervisor keeps running: the roster's agents, then the gateway if enabled."""
        return [a.name for a in self.agents] + ([GATEWAY_SLOT] if self.gateway.enabled else [])

    def agent(self, name: str) -> AgentSpec:
        """The roster's agent ``name``; :class:`ConfigError` when there is none."""
        for spec in self.agents:
            if spec.name == name:
                return spec
        known = ", ".join(a.name for a in self.agents)
        raise ConfigError(f"unknown agent {name!r} (the roster has: {known})")

    @property
    def debaters(self) -> tuple[AgentSpec, ...]:
        return tuple(a for a in self.agents if a.role == "debater")

    @property
    def moderator(self) -> str:
        """The name of the roster's moderator."""
        for spec in self.agents:
            if spec.role == "moderator":
                return spec.name
        raise ConfigError("the roster has no agent with role 'moderator'")

    def default_teams(self, model: str | None = None) -> list[dict[str, Any]]:
        """The teams of a request that names none: the roster's first two debaters, as
        ``TeamSpec`` records with their personas (and ``model`` for both, if given)."""
        return [
            {"agent": a.name, "stance": a.stance, "persona": a.persona or None, "model": model}
            for a in self.debaters[:2]
        ]

    @property
    def home_dir(self) -> Path:
        return self.home.resolve()

    def worker_dir(self, agent: str, index: int) -> Path:
        """Worker ``agent-index``'s data directory: its tables, assignment and metrics URL."""
        return self.home_dir / "workers" / self.namespace / f"{agent}-{index}"
