"""log-sink: consumes wide log events (``log-events``) and stores them in MongoDB ``wide_events``."""
