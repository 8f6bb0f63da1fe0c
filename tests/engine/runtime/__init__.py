"""Tests for engine/runtime/."""
