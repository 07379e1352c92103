"""``python -m gateway``: settings from the environment, JSON logs, uvicorn.

uvicorn's own proxy-header handling is off: the gateway believes ``X-Forwarded-*`` only from the proxies of
``TRUSTED_PROXIES`` (:class:`gateway.middleware.TrustedProxies`), not from whatever uvicorn trusts by default
(``127.0.0.1`` or ``FORWARDED_ALLOW_IPS``), so one setting decides.
"""

from consumer_runtime.service import run_service

from gateway.app import create_app
from gateway.config import GatewaySettings

if __name__ == "__main__":
    run_service("gateway", GatewaySettings, create_app, proxy_headers=False)
