"""Settings: defaults, then a TOML file (``--config``), then ``RTSERVER_*`` environment variables, then flags.
Validated at start-up; every message names the bad key and says what it expects."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .audit.redact import POLICIES
from .errors import ConfigError

BUNDLED_MODEL = Path(__file__).parent / "models" / "rtserver-tiny-q4_0.gguf"
CACHE_TYPES = ("f16", "bf16", "f32", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0")  # llama.cpp's KV cache types


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    model: str = str(BUNDLED_MODEL)  # the default model's GGUF file
    models: dict[str, str] = field(default_factory=dict)  # more models by name: {name = "path.gguf"}
    data_dir: str = "./rtserver-data"
    tls_cert: str = ""
    tls_key: str = ""
    engine: str = "llama"  # llama | scripted (scripted: protocol and load tests)
    scripted_rate: float = 20.0  # tokens/s per turn of the scripted engine; 0 = as fast as possible
    scripted_words: int = 12
    scripted_stamp: bool = False  # benchmarks: each token is the engine's time.monotonic() when it was produced
    n_ctx: int = 2048  # context per session sequence
    slots: int = 8  # sessions whose KV stays in the context at once
    max_queued_turns: int = 64  # turns waiting for an engine place beyond `slots`; more get `busy` at once
    max_queue_wait: float = 10.0  # seconds a new turn may expect to wait before it gets `busy` at once
    kv_host_mb: int = 256  # evicted sessions' KV kept in host memory (restored, not recomputed); 0 = off
    prefill_chunk: int = 128  # prompt tokens decoded per engine step beside the generating sessions' tokens
    decode_ahead: bool = True  # when a reply ends, decode the template tokens that open the next turn at once
    save_ahead: bool = True  # while the engine is idle, copy idle sessions' KV to host memory ahead of eviction
    restore_ahead: bool = True  # while idle, put back the KV of the sessions whose next line is due first (by pace)
    prefill_first: bool = True  # a turn's prompt is decoded in a step of its own, before the others' next tokens
    time_slice: int = 4  # tokens a running turn generates before a turn waiting for a sequence may take it; 0 = off
    threads: int = 0  # llama.cpp threads; 0 = all cores
    flash_attn: str = "off"  # llama.cpp flash attention: off (fastest on CPU, measured) | on | auto (GPU builds)
    cache_type_k: str = "q8_0"  # KV cache type of keys: f16 | bf16 | f32 | q8_0 | q5_1 | q5_0 | q4_1 | q4_0
    cache_type_v: str = "f16"  # of values: f16 | bf16 | f32; quantized (q8_0 ...) only with flash_attn = on
    node_id: str = ""  # defaults to the host name and process id
    redis_url: str = ""  # redis:// rediss:// or redis+sentinel:// — sessions, frame logs and replies shared by nodes
    lease_ttl: float = 2.0  # seconds a node's lease on its sessions lasts unless renewed (failover time)
    redis_cluster: str = "auto"  # auto (ask the server at start-up) | true | false
    redis_timeout: float = 0.5  # seconds one Redis call may take before the node treats Redis as down
    cache_entries: int = 4096  # replies kept in process (deterministic turns only, unless params.cache); 0 = off
    cache_ttl: float = 3600.0  # seconds a cached reply is served, in process and in Redis
    cache_wait: float = 10.0  # seconds without a beat from the node generating an identical turn, then generate
    cache_pace: float = 0.0  # deltas/s a cached reply streams at; 0 = as fast as the client reads
    frame_log: int = 1024  # frames kept per session for resume
    frame_log_ttl: float = 600.0  # seconds a session's frames are kept after its last one (then: a snapshot)
    session_idle_s: float = 300.0  # a session nobody is attached to leaves memory after this long unused
    max_resident_sessions: int = 20000  # sessions in memory at once; idle ones leave first
    session_ttl: float = 30 * 86400.0  # seconds unused before a session is deleted, history and all; 0 = never
    journal_scrub_s: float = 86400.0  # how often every stored session file is read to find damage; 0 = never
    bad_frames_burst: int = 32  # malformed frames a connection may send at once before 1008 ...
    bad_frames_per_s: float = 1.0  # ... and after that, per second (unknown frame types never count)
    send_queue: int = 4096  # frames queued per connection before a slow reader is cut off (4008)
    max_frame_bytes: int = 65536  # larger frames are closed with 1009
    max_card_bytes: int = 4 * 1024 * 1024  # a card.put frame may be this large (a card with a large character book)
    max_text: int = 16384  # characters in say.text and persona
    max_sessions_per_connection: int = 64
    heartbeat: float = 20.0  # seconds between pings; a peer silent for as long again is closed
    hello_timeout: float = 10.0
    resume_grace: float = 10.0  # a turn whose clients all left keeps running this long for a resume
    drain_timeout: float = 30.0  # SIGTERM: how long running turns may take to finish
    fsync: bool = True  # journal with fsync (off only for throwaway benchmarks)
    # --- protection (docs/deploy.md "Protection") ---
    auth: str = "auto"  # auto (loopback bind + nothing configured: off; else on) | on | off
    token_secret: str = ""  # HMAC-SHA256 secret of signed user tokens (JWT HS256); empty: user tokens refused
    protect_http: bool = False  # /metrics and /readyz need an API key too (open by default, as Prometheus expects)
    allowed_origins: str = ""  # comma-separated browser origins (https://game.example); empty: any
    trusted_proxies: str = ""  # comma-separated addresses/CIDRs whose X-Forwarded-For is believed
    connections_per_ip: int = 1000  # 0: no limit (per node)
    pending_per_ip: int = 64  # connections from one address that have not sent hello yet (per node)
    frames_per_min: float = 1200.0  # per user; 0: no limit (shared by the nodes with --redis)
    frames_per_min_ip: float = 6000.0  # per client address
    tokens_per_min: float = 20000.0  # generated tokens per user, reserved from max_tokens at a turn's start
    sessions_per_user: int = 64  # sessions a player (user token) holds open at once (all nodes); 0: no limit
    stored_sessions_per_user: int = 1000  # sessions a player keeps stored, on every node together; 0: no limit
    limits_fail: str = "open"  # Redis unreachable: open (this node's own limits) | closed (refuse)
    max_memory_mb: int = 0  # resident memory at which the node sheds (background turns from 90 %); 0 = off
    tracing: bool = False  # OpenTelemetry traces, one per turn (exporter: OTEL_EXPORTER_OTLP_*; pip install .[otel])
    audit: bool = True  # one record per turn and per security event, hash-chained, in <data_dir>/audit
    audit_policy: str = "hash"  # what is kept of texts: full | redacted | hash | none
    audit_buffer: int = 10000  # records waiting for the disk before new turns get busy (never dropped)
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 256
    log_level: str = "info"
    record_dir: str = ""  # server-side replay recordings (rtprotocol.recording) go here, one file per connection
    record_sessions: str = ""  # ... of the connections that attach to these session ids (comma-separated); * = all
    demo: bool = False  # serve the demo page (chat, story, NPC scene) at / beside the WebSocket endpoint

    def default_params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}

    def model_paths(self) -> dict[str, Path]:
        return {"default": Path(self.model), **{k: Path(v) for k, v in self.models.items()}}


_TYPES = {f.name: f.type for f in fields(Settings)}


def _coerce(key: str, value: Any, source: str) -> Any:
    want = _TYPES[key]
    try:
        if want == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if want == "int":
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if want == "float":
            return float(value)
        if want == "str":
            if not isinstance(value, (str, int, float)):
                raise ValueError(value)
            return str(value)
        if want.startswith("dict"):
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ValueError(value)
            return dict(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {key} must be {want}, got {value!r}") from None
    raise AssertionError(want)


def load_settings(config: str | None, env: dict[str, str], flags: dict[str, Any]) -> Settings:
    values: dict[str, Any] = {}
    if config:
        try:
            raw = tomllib.loads(Path(config).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {config} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config} is not valid TOML: {exc}") from None
        for key, value in raw.items():
            if key.replace("-", "_") not in _TYPES:
                raise ConfigError(f"{config}: unknown setting {key!r}; known: {', '.join(sorted(_TYPES))}")
            values[key.replace("-", "_")] = _coerce(key.replace("-", "_"), value, config)
    for name, value in env.items():
        if name.startswith("RTSERVER_"):
            key = name[len("RTSERVER_") :].lower()
            if key not in _TYPES or _TYPES[key].startswith("dict"):
                raise ConfigError(
                    f"environment: unknown setting {name}; known: "
                    + ", ".join("RTSERVER_" + k.upper() for k in sorted(_TYPES))
                )
            values[key] = _coerce(key, value, f"environment {name}")
    for key, value in flags.items():
        if value is not None:
            values[key] = _coerce(key, value, f"--{key.replace('_', '-')}")
    s = Settings(**values)
    _validate(s)
    return s


def _validate(s: Settings) -> None:
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ConfigError(msg)

    need(0 <= s.port < 65536, f"port must be 0-65535 (0 picks a free port), got {s.port}")
    need(s.engine in ("llama", "scripted"), f"engine must be llama or scripted, got {s.engine!r}")
    need(bool(s.tls_cert) == bool(s.tls_key), "tls_cert and tls_key go together: give both or neither")
    need(s.slots >= 1, "slots must be at least 1")
    need(s.kv_host_mb >= 0, "kv_host_mb must be >= 0")
    need(s.time_slice >= 0, "time_slice must be >= 0 (0 turns time slicing off)")
    need(s.max_queued_turns >= 0 and s.max_queue_wait >= 0, "max_queued_turns and max_queue_wait must be >= 0")
    need(s.flash_attn in ("off", "on", "auto"), f"flash_attn must be off, on or auto, got {s.flash_attn!r}")
    for key in ("cache_type_k", "cache_type_v"):
        kind = getattr(s, key)
        need(kind in CACHE_TYPES, f"{key} must be one of {', '.join(CACHE_TYPES)}, got {kind!r}")
    need(
        s.cache_type_v in ("f16", "bf16", "f32") or s.flash_attn == "on",
        f"cache_type_v = {s.cache_type_v} needs flash_attn = on (llama.cpp keeps values transposed without it and "
        "cannot quantize them): set flash_attn = on, or cache_type_v = f16",
    )
    need(s.n_ctx >= 128, "n_ctx must be at least 128")
    need(
        s.redis_cluster in ("auto", "true", "false"),
        f"redis_cluster must be auto, true or false, got {s.redis_cluster!r}",
    )
    need(s.lease_ttl > 0 and s.redis_timeout > 0, "lease_ttl and redis_timeout must be > 0 (seconds)")
    need(
        not s.redis_url or s.redis_url.split("://", 1)[0] in ("redis", "rediss", "unix"),
        f"redis_url must start with redis://, rediss:// or unix://, got {s.redis_url[:40]!r}",
    )
    need(s.auth in ("auto", "on", "off"), f"auth must be auto, on or off, got {s.auth!r}")
    need(s.audit_policy in POLICIES, f"audit_policy must be one of {', '.join(POLICIES)}, got {s.audit_policy!r}")
    need(s.audit_buffer >= 1, "audit_buffer must be at least 1")
    need(s.limits_fail in ("open", "closed"), f"limits_fail must be open or closed, got {s.limits_fail!r}")
    try:
        [ipaddress.ip_network(p.strip(), strict=False) for p in s.trusted_proxies.split(",") if p.strip()]
    except ValueError as exc:
        raise ConfigError(f"trusted_proxies: {exc}") from None
    for key in (
        "frame_log",
        "send_queue",
        "max_frame_bytes",
        "max_card_bytes",
        "max_text",
        "max_tokens",
        "max_sessions_per_connection",
        "prefill_chunk",
        "max_resident_sessions",
        "bad_frames_burst",
    ):
        need(getattr(s, key) >= 1, f"{key} must be at least 1")
    for key in (
        "heartbeat",
        "hello_timeout",
        "resume_grace",
        "drain_timeout",
        "scripted_rate",
        "frame_log_ttl",
        "session_idle_s",
        "session_ttl",
        "journal_scrub_s",
        "bad_frames_per_s",
        "connections_per_ip",
        "pending_per_ip",
        "frames_per_min",
        "frames_per_min_ip",
        "tokens_per_min",
        "sessions_per_user",
        "stored_sessions_per_user",
        "cache_entries",
        "cache_ttl",
        "cache_wait",
        "cache_pace",
    ):
        need(getattr(s, key) >= 0, f"{key} must be >= 0")
    need(s.cache_ttl > 0, "cache_ttl must be > 0 (cache_entries = 0 turns the reply cache off)")
    if s.engine == "llama":
        for name, path in s.model_paths().items():
            need(path.is_file(), f"model {name!r}: {path} does not exist; point --model at a .gguf file")


def environ() -> dict[str, str]:
    return dict(os.environ)
