"""The engine as a service: `Engine` (a loaded pair, its drafters and cost curves, one
conversation's KV state), the JSON-lines engine process the GUI talks to, and fault
injection for the reliability tests.

May import every package below it (llama, models, decoding, drafters); never cli/bench."""
