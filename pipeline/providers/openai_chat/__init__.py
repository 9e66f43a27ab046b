"""OpenAI-compatible chat-completions gateways (``POST {base}/chat/completions``)."""
