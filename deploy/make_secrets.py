"""One-shot `secrets` service of deploy/compose.yml: the nodes of one cluster must share their
secrets, and none may be a known value. On the first `up` this writes random ones (or the
CHANNELSTREAM_SECRET / CHANNELSTREAM_ADMIN_SECRET given to compose) into the `secrets` volume,
which the nodes read through CHANNELSTREAM_*_FILE; later `up`s keep them. It prints the API
secret and the admin password so `docker compose logs secrets` tells them to their owner."""

import os
import secrets
import sys
from pathlib import Path

DIRECTORY = Path(sys.argv[1] if len(sys.argv) > 1 else "/var/lib/channelstream")
SHOWN = ("secret", "admin_secret")  # the cookie secret is only ever read by the nodes
NAMES = (*SHOWN, "cookie_secret")


def chosen_value(name: str, path: Path) -> tuple[str, str]:
    """(value, where it came from): the variable given to compose, the file, or new."""
    variable = f"CHANNELSTREAM_{name.upper()}"
    if os.environ.get(variable):
        return os.environ[variable], f"from {variable}"
    if path.exists():
        return path.read_text(), "kept from the first start"
    return secrets.token_urlsafe(32), "made at random"


def main() -> None:
    for name in NAMES:
        path = DIRECTORY / name
        value, origin = chosen_value(name, path)
        staging = path.with_suffix(".new")
        staging.write_text(value)
        staging.chmod(0o600)
        staging.replace(path)
        shown = value if name in SHOWN else "(not shown)"
        print(f"{name}: {shown}  [{origin}]", flush=True)


if __name__ == "__main__":
    main()
