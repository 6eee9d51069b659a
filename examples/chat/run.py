"""`make demo`: channelstream (development.ini) and the chat demo together, on 127.0.0.1.

Stops both on Ctrl-C (or SIGTERM), and both when either exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BIN = Path(sys.executable).parent


def main() -> int:
    paths = [str(HERE), os.environ.get("PYTHONPATH", "")]
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    processes = [
        subprocess.Popen([str(BIN / "channelstream"), "-i", str(REPO / "development.ini")]),
        subprocess.Popen([str(BIN / "pserve"), str(HERE / "development.ini")], env=environ),
    ]
    print("channelstream: http://127.0.0.1:8000   chat demo: http://127.0.0.1:6543", flush=True)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    status = 0
    try:
        os.wait()  # until one of them exits
        status = 1
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return status


if __name__ == "__main__":
    sys.exit(main())
