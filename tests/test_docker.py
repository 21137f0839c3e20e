"""The Docker files, tested without a Docker engine (this machine has none).

What can be checked here is checked: compose.yaml and .env.example parse and name only real
settings (and .env.example names all of them); the Dockerfile installs the project the way the
Makefile does; and its builder steps, replayed in a temp dir, give a venv in which the image's
ENTRYPOINT + CMD serve and its HEALTHCHECK passes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from notifier.config import Settings
from tests.procs import free_port, tail, wait_until

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
HOOK_NAME = re.compile(r"^NOTIFIER_HOOK_[A-Z0-9_]+$")
# Chat channels' URLs and secrets: names the schedules give (`url_env`, `secret_env`).
CHANNEL_NAME = re.compile(r"^NOTIFIER_CHANNEL_[A-Z0-9_]+$")
NAME = re.compile(r"\bNOTIFIER_[A-Z0-9_]+")
CJK = re.compile(r"[\u4e00-\u9fff]")


def setting_names(model: type[BaseModel] = Settings, prefix: str = "NOTIFIER_") -> set[str]:
    """Every environment variable the settings read, nested ones joined with `__`."""
    names: set[str] = set()
    for field, info in model.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names |= setting_names(kind, f"{prefix}{field.upper()}__")
        else:
            names.add(f"{prefix}{field.upper()}")
    return names


def unknown(names: set[str]) -> set[str]:
    valid = setting_names()
    return {
        n for n in names if n not in valid and not HOOK_NAME.match(n) and not CHANNEL_NAME.match(n)
    }


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for word, rest in instructions(dockerfile):
        if word == "FROM":
            found.append([])
        if found:
            found[-1].append((word, rest))
    return found


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in stage:
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def exec_form(stage: list[tuple[str, str]], word: str) -> list[str]:
    values = [json.loads(rest) for w, rest in stage if w == word]
    assert values, f"no {word} in exec (JSON) form"
    return list(values[-1])


# --- compose.yaml ---------------------------------------------------------------------------


def test_compose_file_parses_and_wires_notifier_postgres_and_mailpit() -> None:
    text = (DOCKER / "compose.yaml").read_text(encoding="utf-8")
    compose: dict[str, Any] = yaml.safe_load(text)
    services = compose["services"]
    assert set(services) >= {"notifier", "postgres", "mailpit"}
    app = services["notifier"]
    assert app["build"]["context"] == ".."
    assert (DOCKER / app["build"]["context"] / app["build"]["dockerfile"]).resolve() == (
        DOCKER / "Dockerfile"
    )
    assert app["env_file"] in (".env", [".env"])
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "mailpit" in app["depends_on"]
    assert "container_name" not in app, "a fixed name forbids --scale notifier=3"
    for mapping in app.get("ports", []):
        host = str(mapping).rsplit(":", 1)[0]
        assert "-" in host, f"{mapping}: a fixed host port forbids --scale notifier=3"
    env = app["environment"]
    assert env["NOTIFIER_DATABASE_URL"].startswith("postgresql://")
    assert env["NOTIFIER_SMTP__HOST"] == "mailpit" and str(env["NOTIFIER_SMTP__PORT"]) == "1025"
    assert env["NOTIFIER_HTTP__HOST"] == "0.0.0.0"
    mounts = {v.split(":")[1] for v in app["volumes"]}
    assert {"/app/schedules", "/app/templates"} <= mounts
    # The console writes schedules/: a writable named volume, seeded from the image (issue 22).
    (schedules,) = [v for v in app["volumes"] if v.split(":")[1] == "/app/schedules"]
    assert schedules == "schedules:/app/schedules" and "schedules" in compose["volumes"]
    assert services["postgres"]["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["mailpit"]["image"].startswith("axllent/mailpit")
    ports = " ".join(map(str, services["mailpit"]["ports"]))
    assert ":1025" in ports and ":8025" in ports


def test_compose_file_names_only_real_settings() -> None:
    text = (DOCKER / "compose.yaml").read_text(encoding="utf-8")
    names = set(NAME.findall(text))
    assert names, "compose.yaml sets no NOTIFIER_* variable"
    assert unknown(names) == set()


# --- .env.example ---------------------------------------------------------------------------

ASSIGNMENT = re.compile(r"^#?\s*(NOTIFIER_[A-Z0-9_]+)=(.*)$")


def env_example_lines() -> list[str]:
    return (DOCKER / ".env.example").read_text(encoding="utf-8").splitlines()


def test_env_example_lists_every_setting_and_only_real_ones() -> None:
    names = {m.group(1) for line in env_example_lines() if (m := ASSIGNMENT.match(line))}
    assert unknown(names) == set()
    missing = setting_names() - names
    assert missing == set(), f"add these settings to docker/.env.example: {sorted(missing)}"
    assert any(HOOK_NAME.match(n) for n in names), "show a NOTIFIER_HOOK_* secret"


def test_env_example_explains_each_setting_in_chinese_and_english() -> None:
    lines = env_example_lines()
    for i, line in enumerate(lines):
        if not ASSIGNMENT.match(line):
            continue
        j = i - 1
        while j >= 0 and ASSIGNMENT.match(lines[j]):
            j -= 1  # alternatives of one setting share the comment above them
        block = []
        while j >= 0 and lines[j].startswith("#") and not ASSIGNMENT.match(lines[j]):
            block.append(lines[j])
            j -= 1
        comment = " ".join(reversed(block))
        assert comment, f"line {i + 1}: {line!r} has no comment above it"
        assert CJK.search(comment) and re.search(r"[A-Za-z]{3}", comment), (
            f"line {i + 1}: {line!r}: its comment should say it in Chinese and English"
        )


def test_env_example_values_are_valid_settings(tmp_path: Path) -> None:
    """Both the active lines and the commented-out defaults (first of each) validate."""
    seen: dict[str, str] = {}
    for line in env_example_lines():
        m = ASSIGNMENT.match(line)
        if m and m.group(2) and m.group(1) not in seen:
            seen[m.group(1)] = m.group(2)
    env_file = tmp_path / "all.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in seen.items()), encoding="utf-8")
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("NOTIFIER_")}
    try:
        settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    finally:
        os.environ.update(saved)
    assert settings.smtp.host == seen["NOTIFIER_SMTP__HOST"]
    assert settings.http.host == "0.0.0.0"


# --- Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_non_root_with_healthcheck_and_volumes() -> None:
    builder, runtime = stages(DOCKER / "Dockerfile")[-2:]
    base = dict(re.findall(r"ARG (\w+)=(\S+)", (DOCKER / "Dockerfile").read_text(encoding="utf-8")))
    image = builder[0][1].split()[0]
    assert re.sub(r"\$\{(\w+)\}", lambda m: base[m.group(1)], image) == "python:3.11-slim"
    assert "AS builder" in builder[0][1] and runtime[0][1].split()[0] == image
    assert ("USER", "notifier") in runtime
    assert any(w == "COPY" and "--from=builder" in r for w, r in runtime)
    assert ("COPY", "--chown=notifier:notifier schedules /app/schedules") in runtime
    volumes = json.loads(next(r for w, r in runtime if w == "VOLUME"))
    assert {"/app/schedules", "/app/templates"} <= set(volumes)
    health = next(r for w, r in runtime if w == "HEALTHCHECK")
    assert "/healthz" in health and "curl" not in health and "urllib" in health
    assert exec_form(runtime, "ENTRYPOINT") == ["notifier"]
    assert exec_form(runtime, "CMD") == ["run"]
    env = env_of(runtime)
    assert env["NOTIFIER_HTTP__HOST"] == "0.0.0.0"
    assert unknown({k for k in env if k.startswith("NOTIFIER_")}) == set()


def test_dockerfile_installs_the_project_like_the_makefile() -> None:
    builder = stages(DOCKER / "Dockerfile")[-2]
    runs = [r for w, r in builder if w == "RUN"]
    assert "pip install ." in runs, runs
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    # The Makefile installs the same project (editable for development): `pip install ... .`
    assert re.search(r"pip install (--quiet )?(-e )?\.\s*$", makefile, re.MULTILINE)
    for word, rest in builder:
        if word == "COPY":
            for source in shlex.split(rest)[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the build context"


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Replay the builder stage: COPY the same files, RUN the same commands, in a temp dir.

    `/opt/venv` becomes `<tmp>/venv`. A clean venv (no system site-packages, not the test
    venv); pip reads this machine's pip configuration (its local wheels) as `docker build`
    would read the index. About 20-30 s here.
    """
    tmp = tmp_path_factory.mktemp("image")
    venv = tmp / "venv"
    workdir = tmp  # "/" until a WORKDIR
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFIER_", "VIRTUAL"))}
    builder = stages(DOCKER / "Dockerfile")[-2]
    for word, rest in builder:
        if word == "WORKDIR":
            workdir = tmp / rest.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif word == "ENV":
            for key, value in env_of([(word, rest)]).items():
                env[key] = value.replace("/opt/venv", str(venv)).replace("$PATH", env["PATH"])
        elif word == "COPY":
            *sources, dest = shlex.split(rest)
            target = (workdir / dest).resolve()
            for source in sources:
                src = ROOT / source
                if src.is_dir():
                    shutil.copytree(
                        src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
                    )
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, target / src.name)
        elif word == "RUN":
            command = rest.replace("/opt/venv", str(venv))
            assert command in (f"python -m venv {venv}", "pip install ."), (
                f"unknown builder step, teach this test to replay it: RUN {rest}"
            )
            if command.startswith("python "):
                command = f"{shlex.quote(sys.executable)} {command[len('python ') :]}"
            done = subprocess.run(
                command, shell=True, cwd=workdir, env=env, capture_output=True, timeout=240
            )
            assert done.returncode == 0, (
                f"RUN {rest} failed:\n{done.stdout.decode()[-2000:]}\n{done.stderr.decode()}"
            )
    assert (venv / "bin" / "notifier").exists()
    return venv


def test_the_images_entry_command_serves_and_passes_its_healthcheck_in_a_clean_venv(
    image_venv: Path, tmp_path: Path
) -> None:
    runtime = stages(DOCKER / "Dockerfile")[-1]
    command = exec_form(runtime, "ENTRYPOINT") + exec_form(runtime, "CMD")
    health = next(r for w, r in runtime if w == "HEALTHCHECK")
    health_cmd = json.loads(health[health.index("CMD") + 3 :].strip())
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFIER_", "VIRTUAL"))}
    env.update(env_of(runtime))
    env["PATH"] = f"{image_venv / 'bin'}:{os.environ['PATH']}"
    env.update(
        {
            # What compose.yaml mounts at /app/schedules and /app/templates.
            "NOTIFIER_SCHEDULES_DIR": str(ROOT / "schedules"),
            "NOTIFIER_TEMPLATES_DIR": str(ROOT / "templates"),
            "NOTIFIER_HTTP__PORT": str(port),
            "NOTIFIER_WATCH": "false",
            # Not the example secret of .env.example: that one is refused at start.
            "NOTIFIER_HOOK_VISIT_REQUEST": "whsec_dGVzdC1vbmx5LWRvY2tlci1zZWNyZXQtMDEyMzQ1Ng==",
        }
    )
    assert shutil.which(command[0], path=env["PATH"]) == str(image_venv / "bin" / command[0])
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=out)
    try:

        def healthy() -> bool:
            assert proc.poll() is None, f"`{' '.join(command)}` exited:\n{tail(log)}"
            check = subprocess.run(health_cmd, env=env, capture_output=True, timeout=10)
            return check.returncode == 0

        started = time.monotonic()
        wait_until(healthy, within=30, interval=0.3, what="the HEALTHCHECK to pass")
        print(f"\n[docker] healthy after {time.monotonic() - started:.1f}s")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, tail(log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
