"""Tandem's OpenAI-compatible HTTP API (issue 15): `tandem serve`, and the app's
"Local server" switch, which runs the same code inside the app's engine process.

This package owns HTTP and the OpenAI wire format only.  It never holds the engine:
whoever does (engine/runtime) hands it a `Backend` (jobs.py) whose `submit` queues a
request for the one thread that drives the Engine.  So the package sits below
runtime (runtime/server.py starts it for the app; cli/serve.py for `tandem serve`)
and needs nothing above `decoding`.

    jobs.py      Job (one request on its way through the engine queue), Backend, ModelInfo
    protocol.py  request validation, OpenAI-style errors and response bodies, stop strings
    http.py      the Starlette application (routes, API key, SSE streaming, disconnects)
    serve.py     HttpServer: binds the socket, runs uvicorn in a thread, stops cleanly
"""
