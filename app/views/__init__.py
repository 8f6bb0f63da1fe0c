"""Widgets and windows.  They show state and emit intents; controllers do the work."""
