"""Tests for engine/bench/."""
