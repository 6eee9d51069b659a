"""`make demo`: channelstream (development.ini) and the chat demo together, on 127.0.0.1.

The URLs are printed once both accept connections; if either exits first (its port taken, a
bad setting), or does not listen within `--timeout` seconds, it says which and exits 1.
Stops both on Ctrl-C (or SIGTERM), and both when either exits.

    python examples/chat/run.py [--port 8000] [--demo-port 6543]
"""

from __future__ import annotations

import argparse
import configparser
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
POLL_INTERVAL = 0.1


@dataclass
class Started:
    """One of the two servers: its name, port and process."""

    name: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def port_taken(port: int) -> bool:
    """True when something listens on HOST:port already (binding it fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


def wait_until_listening(servers: list[Started], timeout: float) -> str | None:
    """None once every server accepts connections; else why not (which one exited, or the
    timeout), in one line."""
    deadline = time.monotonic() + timeout
    waiting = list(servers)
    while waiting:
        for server in list(waiting):
            status = server.process.poll()
            if status is not None:
                return f"{server.name} exited with status {status} before listening on {server.url}"
            if accepts(server.port):
                waiting.remove(server)
        if waiting and time.monotonic() > deadline:
            names = " and ".join(server.name for server in waiting)
            return f"{names} did not listen within {timeout:g} s"
        if waiting:
            time.sleep(POLL_INTERVAL)
    # a server that exited after its port answered (someone else's port after all)
    for server in servers:
        if server.process.poll() is not None:
            return f"{server.name} exited with status {server.process.returncode}"
    return None


def demo_ini(channelstream_port: int, demo_port: int, folder: Path) -> Path:
    """examples/chat/development.ini with the two ports put in, written into `folder`."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep keys' case
    parser.read(HERE / "development.ini", encoding="utf-8")
    url = f"http://{HOST}:{channelstream_port}"
    parser["app:main"]["channelstream.url"] = url
    parser["app:main"]["chat.channelstream_public_url"] = url
    parser["server:main"]["port"] = str(demo_port)
    path = folder / "chat-demo.ini"
    with open(path, "w", encoding="utf-8") as handle:
        parser.write(handle)
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000, help="channelstream's (8000)")
    parser.add_argument("--demo-port", type=int, default=6543, help="the chat demo's (6543)")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for both to listen (60)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for name, port, option in (
        ("channelstream", args.port, "--port"),
        ("chat demo", args.demo_port, "--demo-port"),
    ):
        if port_taken(port):
            print(
                f"make demo: {name} cannot start: {HOST}:{port} is already in use (another "
                f"server running? choose another: python examples/chat/run.py {option} N)",
                file=sys.stderr,
            )
            return 1
    # channelstream: development.ini on the chosen port (a CHANNELSTREAM_PORT of this shell
    # would move it elsewhere). The chat demo is not channelstream: none of its variables.
    channelstream_env = {
        **os.environ,
        "CHANNELSTREAM_HOST": HOST,
        "CHANNELSTREAM_PORT": str(args.port),
    }
    demo_env = {k: v for k, v in os.environ.items() if not k.startswith("CHANNELSTREAM_")}
    paths = [str(HERE), demo_env.get("PYTHONPATH", "")]
    demo_env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    with tempfile.TemporaryDirectory(prefix="chat-demo-") as folder:
        servers = [
            Started(
                "channelstream",
                args.port,
                subprocess.Popen(
                    [str(BIN / "channelstream"), "-i", str(REPO / "development.ini")],
                    env=channelstream_env,
                ),
            ),
            Started(
                "chat demo",
                args.demo_port,
                subprocess.Popen(
                    [str(BIN / "pserve"), str(demo_ini(args.port, args.demo_port, Path(folder)))],
                    env=demo_env,
                ),
            ),
        ]
        status = 0
        try:
            problem = wait_until_listening(servers, args.timeout)
            if problem:
                print(f"make demo: {problem}: see its lines above", file=sys.stderr, flush=True)
                return 1
            channelstream, demo = servers
            print(
                f"channelstream: {channelstream.url}   chat demo: {demo.url}   (Ctrl-C stops both)",
                flush=True,
            )
            os.wait()  # until one of them exits
            status = 1
        except KeyboardInterrupt:
            pass
        finally:
            for server in servers:
                if server.process.poll() is None:
                    server.process.terminate()
            for server in servers:
                try:
                    server.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    server.process.kill()
                    server.process.wait()
        return status


if __name__ == "__main__":
    sys.exit(main())
