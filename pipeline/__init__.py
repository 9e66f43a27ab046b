"""nanobatch: resumable bulk image generation with Gemini's image models."""

__version__ = "0.1.0"
