"""issue-ingestor: factory issue events (``chatbot-issue-events``) into MySQL, with chatbot sessions."""
