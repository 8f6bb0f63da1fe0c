"""Tests for engine/models/."""
