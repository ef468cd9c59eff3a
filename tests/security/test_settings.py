"""Production settings as production loads them: manage.py's default settings module
(config.settings.base) in a fresh process, with nothing but the environment given here."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NO_ISSUES = "System check identified no issues (0 silenced).\n"
HTTPS_SETTINGS = [
    "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_PROXY_SSL_HEADER",
]


def production(tmp_path: Path, **variables: str) -> dict[str, str]:
    return {
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "hone.example.org",
        "HONE_VAR_DIR": str(tmp_path),
        **variables,
    }


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """manage.py with exactly `env` (the test process's own DEBUG, DATABASE_URL and
    DJANGO_SETTINGS_MODULE stay out)."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def settings_of(env: dict[str, str]) -> dict:
    names = json.dumps(HTTPS_SETTINGS)
    done = manage(
        "shell",
        "--no-imports",
        "-c",
        f"import json; from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {names}}}))",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line and not line.startswith("#")]
    return {name: value for name, value in pairs}


def test_production_environment_passes_check_deploy_without_a_single_issue(tmp_path):
    done = manage("check", "--deploy", env=production(tmp_path))

    assert (done.returncode, done.stdout, done.stderr) == (0, NO_ISSUES, "")


def test_env_example_has_no_value_check_deploy_flags(tmp_path):
    example = env_example()
    as_is = manage("check", "--deploy", env=example)
    with_key = manage("check", "--deploy", env={**example, "SECRET_KEY": secrets.token_urlsafe(50)})

    # Its SECRET_KEY is empty: a copy of the file refuses to start until a real key is set.
    assert example["SECRET_KEY"] == ""
    assert as_is.returncode == 1
    assert as_is.stderr.splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: SECRET_KEY is required when DEBUG is off. "
        "Set it in the environment or in .env (see .env.example), or set DEBUG=1 for local "
        "development."
    )
    assert (with_key.returncode, with_key.stdout, with_key.stderr) == (0, NO_ISSUES, "")


def test_https_settings_are_on_without_debug_off_with_it_and_each_can_be_set(tmp_path):
    development = {"DEBUG": "1", "HONE_VAR_DIR": str(tmp_path)}
    chosen = {
        "SECURE_SSL_REDIRECT": "0",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "1",
        "SECURE_HSTS_SECONDS": "600",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": "0",
        "SECURE_HSTS_PRELOAD": "0",
        "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO, https",
    }

    assert settings_of(production(tmp_path)) == {
        "SECURE_SSL_REDIRECT": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
        "SECURE_PROXY_SSL_HEADER": None,
    }
    assert settings_of(development) == {
        "SECURE_SSL_REDIRECT": False,
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_PROXY_SSL_HEADER": None,
    }
    assert settings_of(production(tmp_path, **chosen)) == {
        "SECURE_SSL_REDIRECT": False,
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 600,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
    }


def test_behind_a_tls_proxy_requests_are_secure_and_plain_http_is_redirected(tmp_path):
    env = production(tmp_path, SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https")
    script = (
        "import json; from django.test import Client; client = Client(); "
        "proxied = client.get('/login/', HTTP_HOST='hone.example.org', "
        "HTTP_X_FORWARDED_PROTO='https'); "
        "plain = client.get('/login/', HTTP_HOST='hone.example.org'); "
        "print(json.dumps([proxied.status_code, proxied.wsgi_request.is_secure(), "
        "proxied.get('Strict-Transport-Security'), plain.status_code, plain.get('Location')]))"
    )

    done = manage("shell", "--no-imports", "-c", script, env=env)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        200,
        True,
        "max-age=31536000; includeSubDomains; preload",
        301,
        "https://hone.example.org/login/",
    ]


def test_a_malformed_proxy_header_setting_is_refused_by_name(tmp_path):
    done = manage("check", env=production(tmp_path, SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto"))

    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: "
        "SECURE_PROXY_SSL_HEADER='X-Forwarded-Proto': expected the header as Django names it "
        "and the value that means HTTPS, separated by a comma, e.g. HTTP_X_FORWARDED_PROTO,https."
    )
