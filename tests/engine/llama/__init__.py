"""Tests for engine/llama/."""
