"""`make run`'s credentials: an admin token and a user's API key, kept in DIR (default .devdata) so they
stay the same from one run to the next, and the API keys file of their hashes.

Prints the environment lines for the services (``ADMIN_TOKEN``, ``GATEWAY_AUTH=open``,
``AUTH_API_KEYS_FILE``) on stdout and, on stderr, the two tokens ready to use with curl.

    python scripts/dev_auth.py .devdata >> .devdata/services.env
"""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

from gateway.identity import DATA_PLANE_SCOPES, key_hash, new_key

#: The user whose token `make run` prints (the seeds' examples mention user_001).
DEV_USER = "user_001"


def _kept(path: Path, make: str) -> str:
    """The secret in ``path``, created (mode 600) with ``make`` when absent or empty."""
    if not path.exists() or not path.read_text().strip():
        path.write_text(make + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def main(argv: list[str]) -> int:
    where = Path(argv[1] if len(argv) > 1 else ".devdata").resolve()
    where.mkdir(parents=True, exist_ok=True)
    admin = _kept(where / "admin-token", secrets.token_urlsafe(24))
    user = _kept(where / "user-token", new_key("dev"))
    keys = where / "api-keys.json"
    entry = {"name": "make-run-user", "subject": DEV_USER, "scopes": sorted(DATA_PLANE_SCOPES),
             "sha256": key_hash(user)}  # fmt: skip
    keys.write_text(json.dumps({"keys": [entry]}, indent=2) + "\n")
    keys.chmod(0o600)
    print(f"ADMIN_TOKEN={admin}")
    print("GATEWAY_AUTH=open")
    print(f"AUTH_API_KEYS_FILE={keys}")
    sys.stderr.write(
        "auth: GATEWAY_AUTH=open - a call without a token acts as an anonymous user (data-plane scopes)\n"
        f"user token ({DEV_USER}; {' '.join(sorted(DATA_PLANE_SCOPES))}):\n"
        f"  {user}\n"
        "admin token (scope admin; also the console's login):\n"
        f"  {admin}\n"
        f'  curl -H "Authorization: Bearer $(cat {where.name}/user-token)" '
        f"http://localhost:8000/api/v1/notifications/{DEV_USER}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
