"""The first run, as a new user meets it, under each entry point: `channelstream -i FILE`,
`channelstream` with CHANNELSTREAM_* variables only, and `pserve FILE`.

Secrets nobody set are made at random and logged; empty ones and production.ini's CHANGE-ME
placeholders are refused; a bad setting or a port already in use is one line on stderr and
exit status 2, never a traceback; under pserve CHANNELSTREAM_* variables override the file.
"""

from __future__ import annotations

import re
import socket
import subprocess
import textwrap
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tests.e2e.apiclient import ApiClient, admin_cookie, wait_for_log
from tests.e2e.conftest import (
    HOST,
    PASTE_LOGGING,
    REPO_ROOT,
    RunningServer,
    clean_environ,
    console_script,
    free_port,
    wait_until_listening,
)

MADE_SECRET = re.compile(
    r"WARNING +\[channelstream\] (secret|admin_secret) is not set: made a random one for this "
    r"run: (\S+) \(set CHANNELSTREAM_(?:SECRET|ADMIN_SECRET) to choose your own\)$",
    re.M,
)


def made_secrets(log: str) -> dict[str, str]:
    """{name: value} of the secrets the log says were made at random (each said once)."""
    found = MADE_SECRET.findall(log)
    made = dict(found)
    assert len(made) == len(found), f"a secret was announced twice:\n{log}"
    return made


@pytest.fixture
def start_env_only(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """`start_env_only(env)`: `channelstream` with no ini, configured by `env` alone (on a
    free port of 127.0.0.1 unless `env` says otherwise); stopped at teardown."""
    started: list[RunningServer] = []

    def start(env: Mapping[str, str]) -> RunningServer:
        port = free_port()
        values = {"CHANNELSTREAM_HOST": HOST, "CHANNELSTREAM_PORT": str(port), **env}
        log_path = tmp_path / f"env-only-{len(started)}.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                [console_script("channelstream")],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
                env=clean_environ(values),
            )
        server = RunningServer(int(values["CHANNELSTREAM_PORT"]), process, log_path, log_path)
        started.append(server)
        wait_until_listening(server)
        return server

    yield start
    for server in started:
        server.stop()


def run(
    tmp_path: Path, command: str, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a console script of this virtualenv to its end (60 s at most)."""
    return subprocess.run(
        [console_script(command), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_environ(env),
        timeout=60,
    )


def assert_refused(
    result: subprocess.CompletedProcess[str], line: str, after_start: bool = False
) -> None:
    """Exit status 2, and stderr is that one line: no traceback, no Python internals.
    `after_start`: the refusal came once the app was built, so start lines precede it."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output and "invalid literal" not in output, output
    lines = result.stderr.strip().splitlines()
    assert (lines[-1:] if after_start else lines) == [line], output
    assert output.count("channelstream: ") == 1, output
    assert "Exiting" not in output  # pserve's "Exiting (-v to see traceback)", status 0


def paste_ini(app_lines: str, port: int | str = 8000, host: str = HOST) -> str:
    """A PasteDeploy file of channelstream with these [app:main] lines."""
    app = textwrap.dedent(app_lines).strip()
    return (
        f"[app:main]\nuse = egg:channelstream\n{app}\n\n"
        f"[server:main]\nuse = egg:channelstream\nhost = {host}\nport = {port}\n" + PASTE_LOGGING
    )


# --------------------------------------------------------------------- secrets at start


def test_env_only_server_makes_its_secrets_logs_them_once_and_they_work(start_env_only):
    server = start_env_only({})
    made = made_secrets(server.log_text())
    assert set(made) == {"secret", "admin_secret"}
    assert ApiClient(server.base_url, made["secret"]).connect("alice")  # signed with it: 200
    assert admin_cookie(server.port, "admin", made["admin_secret"]).startswith("auth_tkt=")
    assert server.stop() == 0


def test_pserve_makes_and_logs_the_secrets_its_file_does_not_set(start_server):
    server = start_server(command="pserve", settings={"log_level": "INFO"})
    made = made_secrets(server.log_text())
    assert set(made) == {"secret", "admin_secret"}
    assert ApiClient(server.base_url, made["secret"]).connect("alice")


def test_channelstream_ini_without_admin_secret_makes_only_that_one(start_server):
    server = start_server(settings={"secret": "given"})
    assert set(made_secrets(server.log_text())) == {"admin_secret"}


def test_secrets_from_files_as_docker_secrets_mount_them(start_env_only, tmp_path):
    (tmp_path / "api").write_text("secret-from-a-file\n")
    (tmp_path / "admin").write_text("  admin-from-a-file  \n")
    server = start_env_only(
        {
            "CHANNELSTREAM_SECRET_FILE": str(tmp_path / "api"),
            "CHANNELSTREAM_ADMIN_SECRET_FILE": str(tmp_path / "admin"),
        }
    )
    assert made_secrets(server.log_text()) == {}
    assert ApiClient(server.base_url, "secret-from-a-file").connect("alice")
    assert admin_cookie(server.port, "admin", "admin-from-a-file")


def test_an_empty_allow_posting_from_means_any_address_with_a_warning(start_env_only):
    server = start_env_only({"CHANNELSTREAM_ALLOW_POSTING_FROM": "", "CHANNELSTREAM_SECRET": "s"})
    log = server.log_text()
    assert (
        "WARNING [channelstream] Server API calls allowed from any address "
        "(allow_posting_from is empty); signatures are still required"
    ) in log
    assert "Server API calls allowed from: 0.0.0.0/0, ::/0" in log
    unsigned = ApiClient(server.base_url, "s").call("/connect", {"username": "x"}, signed=False)
    assert unsigned.status == 403  # a signature is still required


PRODUCTION_INI = REPO_ROOT / "production.ini"
PLACEHOLDER = (
    "channelstream: secret in config file {path} ({key}) is still the placeholder "
    "'CHANGE-ME-api-secret': set a long random value of your own"
)


def test_production_ini_as_shipped_is_refused_by_channelstream(tmp_path):
    result = run(tmp_path, "channelstream", "-i", str(PRODUCTION_INI))
    key = "[app:main] channelstream.secret"
    assert_refused(result, PLACEHOLDER.format(path=PRODUCTION_INI, key=key))


def test_production_ini_as_shipped_is_refused_by_pserve(tmp_path):
    result = run(tmp_path, "pserve", str(PRODUCTION_INI))
    assert_refused(result, PLACEHOLDER.format(path=PRODUCTION_INI, key="channelstream.secret"))


def test_an_empty_secret_in_a_file_is_refused_by_channelstream(tmp_path):
    ini = tmp_path / "empty.ini"
    ini.write_text("[channelstream]\nsecret =\nadmin_secret = a\n")
    result = run(tmp_path, "channelstream", "-i", str(ini))
    assert_refused(
        result,
        f"channelstream: secret is empty in config file {ini} ([channelstream] secret): set a "
        "long random value, or leave it out to have a random one made at each start",
    )


def test_an_empty_admin_secret_is_refused_by_pserve(tmp_path):
    ini = tmp_path / "empty.ini"
    ini.write_text(paste_ini("channelstream.secret = s\nchannelstream.admin_secret ="))
    result = run(tmp_path, "pserve", str(ini))
    assert_refused(
        result,
        f"channelstream: admin_secret is empty in config file {ini} (channelstream.admin_secret)"
        ": set a long random value, or leave it out to have a random one made at each start",
    )


@pytest.mark.parametrize("variable", ["CHANNELSTREAM_SECRET", "CHANNELSTREAM_ADMIN_SECRET"])
def test_an_empty_secret_variable_is_refused_by_env_only_channelstream(tmp_path, variable):
    result = run(tmp_path, "channelstream", env={variable: ""})
    name = variable.removeprefix("CHANNELSTREAM_").lower()
    assert_refused(
        result,
        f"channelstream: {name} is empty in environment variable {variable}: set a long random "
        "value, or leave it out to have a random one made at each start",
    )


def test_a_secret_and_its_file_both_set_are_refused(tmp_path):
    (tmp_path / "s").write_text("x")
    env = {"CHANNELSTREAM_SECRET": "x", "CHANNELSTREAM_SECRET_FILE": str(tmp_path / "s")}
    assert_refused(
        run(tmp_path, "channelstream", env=env),
        "channelstream: both CHANNELSTREAM_SECRET and CHANNELSTREAM_SECRET_FILE are set: set "
        "only one",
    )


def test_an_unreadable_secret_file_is_refused_under_pserve(tmp_path):
    ini = tmp_path / "deploy.ini"
    ini.write_text(paste_ini("channelstream.secret = s"))
    missing = tmp_path / "no-such-secret"
    env = {"CHANNELSTREAM_ADMIN_SECRET_FILE": str(missing)}
    assert_refused(
        run(tmp_path, "pserve", str(ini), env=env),
        f"channelstream: CHANNELSTREAM_ADMIN_SECRET_FILE: cannot read {missing}: No such file "
        "or directory",
    )


# ----------------------------------------------------- setting errors: what and where


def test_a_bad_value_in_a_file_says_what_was_expected_and_where(tmp_path):
    ini = tmp_path / "deploy.ini"
    ini.write_text(paste_ini("channelstream.secret = s\nchannelstream.port = abc"))
    assert_refused(
        run(tmp_path, "channelstream", "-i", str(ini)),
        f"channelstream: invalid value for setting 'port' from config file {ini} ([app:main] "
        "channelstream.port): expected a port number 0..65535, got 'abc'",
    )


def test_a_bad_variable_says_what_was_expected_and_which_variable(tmp_path):
    assert_refused(
        run(tmp_path, "channelstream", env={"CHANNELSTREAM_MAX_CONNECTIONS": "lots"}),
        "channelstream: invalid value for setting 'max_connections' from environment variable "
        "CHANNELSTREAM_MAX_CONNECTIONS: expected a whole number >= 0, got 'lots'",
    )


def test_a_signature_checker_that_does_not_import_is_a_setting_error(tmp_path):
    assert_refused(
        run(tmp_path, "channelstream", env={"CHANNELSTREAM_SIGNATURE_CHECKER": "no.such.Checker"}),
        "channelstream: invalid value for setting 'signature_checker' from environment variable "
        "CHANNELSTREAM_SIGNATURE_CHECKER: expected an importable module.Class, got "
        "'no.such.Checker' (No module named 'no')",
    )


def test_pserve_refuses_a_bad_app_setting_with_one_line_and_status_2(tmp_path):
    ini = tmp_path / "deploy.ini"
    ini.write_text(paste_ini("channelstream.heartbeat_interval = soon"))
    assert_refused(
        run(tmp_path, "pserve", str(ini)),
        f"channelstream: invalid value for setting 'heartbeat_interval' from config file {ini} "
        "(channelstream.heartbeat_interval): expected a number of seconds > 0, got 'soon'",
    )


def test_pserve_refuses_a_bad_server_port_with_one_line_and_status_2(tmp_path):
    ini = tmp_path / "deploy.ini"
    ini.write_text(paste_ini("channelstream.secret = s", port="eighty"))
    assert_refused(
        run(tmp_path, "pserve", str(ini)),
        f"channelstream: invalid value for setting 'port' from config file {ini} ([server:main] "
        "port): expected a port number 0..65535, got 'eighty'",
        after_start=True,  # pserve builds the app before its server runner reads the port
    )


def test_pserve_refuses_a_bad_variable_with_one_line_and_status_2(tmp_path):
    ini = tmp_path / "deploy.ini"
    ini.write_text(paste_ini("channelstream.secret = s"))
    assert_refused(
        run(tmp_path, "pserve", str(ini), env={"CHANNELSTREAM_PORT": "eighty"}),
        "channelstream: invalid value for setting 'port' from environment variable "
        "CHANNELSTREAM_PORT: expected a port number 0..65535, got 'eighty'",
    )


# ------------------------------------------------ pserve: the variables override the file


@pytest.fixture
def occupied_port() -> Iterator[int]:
    """A port of 127.0.0.1 that another socket listens on for the test's duration."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_under_pserve_channelstream_port_overrides_the_files_port(start_server, occupied_port):
    """The file names a port that is taken: only if CHANNELSTREAM_PORT wins does it serve."""
    port = free_port()
    ini = paste_ini("channelstream.secret = pserve-secret", port=occupied_port)
    env = {"CHANNELSTREAM_PORT": str(port), "CHANNELSTREAM_MAX_CONNECTIONS": "1"}
    server = start_server(ini_text=ini, command="pserve", port=port, env=env)
    wait_for_log(server.log_text, f"Serving on http://127.0.0.1:{port}")
    api = ApiClient(server.base_url, "pserve-secret")
    assert api.connect("alice")
    assert api.call("/connect", {"username": "bob"}).status == 503  # the variable's limit


# ------------------------------------------------------------------ port already in use

IN_USE = (
    "channelstream: cannot listen on 127.0.0.1:{port}: address already in use (another "
    "server running? choose another port: CHANNELSTREAM_PORT or port in the ini)"
)


def assert_in_use(result: subprocess.CompletedProcess[str], port: int) -> None:
    """Exit status 2, the one line last on stderr (after the start's log lines), no
    traceback; the node it had built stopped without an error."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output and "Exiting" not in output, output
    assert result.stderr.strip().splitlines()[-1] == IN_USE.format(port=port), output
    assert output.count("cannot listen") == 1, output
    assert "stopping the node failed" not in output and "ERROR" not in output, output


def test_port_in_use_under_channelstream_ini(tmp_path, occupied_port):
    ini = tmp_path / "deploy.ini"
    ini.write_text(f"[channelstream]\nhost = {HOST}\nport = {occupied_port}\nsecret = s\n")
    assert_in_use(run(tmp_path, "channelstream", "-i", str(ini)), occupied_port)


def test_port_in_use_under_env_only_channelstream(tmp_path, occupied_port):
    env = {"CHANNELSTREAM_HOST": HOST, "CHANNELSTREAM_PORT": str(occupied_port)}
    assert_in_use(run(tmp_path, "channelstream", env=env), occupied_port)


def test_port_in_use_under_pserve(tmp_path, occupied_port):
    ini = tmp_path / "deploy.ini"
    ini.write_text(paste_ini("channelstream.secret = s", port=occupied_port))
    assert_in_use(run(tmp_path, "pserve", str(ini)), occupied_port)


def test_port_in_use_under_pserve_with_redis_stops_the_node(
    tmp_path, occupied_port, redis_url, redis_prefix
):
    """A node on Redis has started its loops and announced itself before the server tries to
    listen: it is stopped (the process ends, status 2) rather than left running."""
    ini = tmp_path / "deploy.ini"
    app = f"channelstream.broker = {redis_url}\nchannelstream.redis_prefix = {redis_prefix}"
    ini.write_text(paste_ini(app, port=occupied_port))
    result = run(tmp_path, "pserve", str(ini))
    assert_in_use(result, occupied_port)
    assert "Redis broker at" in result.stderr
