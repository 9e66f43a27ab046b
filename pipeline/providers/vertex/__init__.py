"""Vertex AI's ``generateContent``: the native Gemini body at a Google Cloud project's location
(OAuth through Application Default Credentials) or in express mode (an API key)."""
