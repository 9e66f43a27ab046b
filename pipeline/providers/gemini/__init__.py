"""The Gemini API's native ``generateContent`` protocol."""
