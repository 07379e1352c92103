"""The gateway's HTTP API, one module per noun."""
