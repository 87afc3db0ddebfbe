import pytest

from rtserver.errors import ConfigError
from rtserver.settings import load_settings


def test_precedence_file_then_env_then_flags(tmp_path):
    cfg = tmp_path / "rt.toml"
    cfg.write_text('port = 9000\nengine = "scripted"\nresume_grace = 3\n')
    s = load_settings(str(cfg), {"RTSERVER_PORT": "9100", "RTSERVER_SLOTS": "2"}, {"port": 9200})
    assert (s.port, s.slots, s.resume_grace, s.engine) == (9200, 2, 3.0, "scripted")


@pytest.mark.parametrize(
    ("file", "env", "needle"),
    [
        ('prot = 1\nengine = "scripted"', {}, "unknown setting 'prot'"),
        ('port = "x"\nengine = "scripted"', {}, "port must be int"),
        ('engine = "scripted"', {"RTSERVER_PORTT": "1"}, "RTSERVER_PORTT"),
        ('engine = "scripted"\nfsync = "maybe"', {}, "fsync must be bool"),
        ('engine = "gpt"', {}, "engine must be llama or scripted"),
        ('engine = "scripted"\ntls_cert = "c.pem"', {}, "tls_cert and tls_key go together"),
        ('model = "/nope.gguf"', {}, "/nope.gguf does not exist"),
        ('engine = "scripted"', {"RTSERVER_PREFILL_CHUNK": "0"}, "prefill_chunk must be at least 1"),
        ('engine = "scripted"\ntime_slice = -1', {}, "time_slice must be >= 0"),
        ('engine = "scripted"\ncache_type_k = "q3_k"', {}, "cache_type_k must be one of f16, bf16"),
        ('engine = "scripted"\ncache_type_v = "q8_0"', {}, "cache_type_v = q8_0 needs flash_attn = on"),
    ],
)
def test_bad_settings_name_the_key(tmp_path, file, env, needle):
    cfg = tmp_path / "rt.toml"
    cfg.write_text(file)
    with pytest.raises(ConfigError) as info:
        load_settings(str(cfg), env, {})
    assert needle in str(info.value)


def test_serve_help_gives_real_defaults_not_none():
    from rtserver.cli import _parser

    serve = _parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    text = " ".join(serve.format_help().split())
    assert "(default: None)" not in text  # flags default to None only so that settings can layer under them
    assert "--time-slice TOKENS" in text and "(default 4; 0: a turn keeps its place)" in text
