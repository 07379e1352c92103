"""The gateway's operations: what the API routes and the console both do, in one place.

Each module takes the process-wide clients (``KafkaGateway``, ``Upstreams``, ``ControlPlane``) and plain
arguments, returns domain objects (pydantic models, also used as the API's response models) and raises
:mod:`gateway.ops.errors`; neither knows about HTTP. ``gateway.api`` maps them onto routes and
``gateway.errors`` maps the errors onto statuses, once; ``gateway.console`` renders the same objects.

topics: list, describe, create · browse: read and produce records · groups: lag, describe, reset offsets ·
dlq: dead-letter topics, dead letters, replay · services: status, control, readiness.
"""
