"""Tests for engine/decoding/."""
