"""Tests of the Gemini API emulator (pipeline.emulator)."""
