"""Tests for engine/drafters/."""
