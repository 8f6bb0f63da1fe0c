"""Tests for engine/cli/."""
