"""`tandem <command>`: one module per command, wired by `main`, plus terminal reporting.

The top of the engine: may import anything in it; nothing imports it but `app.launcher`."""
