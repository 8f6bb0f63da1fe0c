"""Remote devices through ggml's RPC backend: the target's layers on another machine.

llama.cpp already solves this.  A machine runs ggml's RPC server (`tandem rpc-server`
starts it with `ggml_backend_rpc_start_server` from the very llama.cpp build Tandem
uses, so client and server speak the same protocol); here, the server's devices are
added with `ggml_backend_rpc_add_server` and passed in `llama_model_params.devices`
of the target only.  The draft stays local: a whole tree is verified in one remote
decode, which is where speculation pays most over a network.

ggml aborts the process when a server cannot be reached, refuses the handshake, or
dies mid-request (GGML_ABORT in ggml-rpc.cpp).  So before ggml sees an endpoint we
connect and run the HELLO handshake ourselves, which turns the first two into clear
errors, and `install_abort_message` turns the third into one line naming the server
and a non-signal exit code, instead of a SIGABRT and a backtrace.

The protocol has no authentication: a server must only listen on a trusted network.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import socket
import struct
import sys
from pathlib import Path
from typing import Any

from engine.errors import TandemError

DEFAULT_PORT = 50052  # llama.cpp's rpc-server default
# ggml-rpc.h of the llama.cpp in llama-cpp-python 0.3.36; checked against the server's
# reply, so a mismatch is an error message rather than an abort inside ggml
PROTO_MAJOR, PROTO_MINOR = 7, 0
_CMD_HELLO = 14
_CAPS_SIZE = 24  # RPC_CONN_CAPS_SIZE: zeroed caps ask for plain TCP
EXIT_REMOTE_LOST = 75  # EX_TEMPFAIL: the engine process reports it as "remote server lost"


class RemoteError(TandemError):
    """A remote device could not be used; the message says which server and why."""


def parse_endpoints(text: str | None) -> list[str]:
    """'host:port[,host:port]' → ['host:port', ...]; empty or None → []."""
    out: list[str] = []
    for item in (text or "").replace(" ", ",").split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep:
            host, port = item, str(DEFAULT_PORT)
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise RemoteError(f"remote device {item!r} is not host:port (for example 192.168.1.20:{DEFAULT_PORT})")
        out.append(f"{host}:{int(port)}")
    return out


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (nothing on the network can connect)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def hello(endpoint: str, timeout: float = 5.0) -> tuple[int, int, int]:
    """Connect and handshake as ggml's client does; return the server's protocol version.
    Raises RemoteError for an unreachable server or an incompatible version."""
    host, _, port = endpoint.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.sendall(struct.pack("<BQ", _CMD_HELLO, _CAPS_SIZE) + bytes(_CAPS_SIZE))
            size = struct.unpack("<Q", _recv(sock, 8))[0]
            if size < 3:
                raise RemoteError(f"{endpoint} answered the handshake with {size} bytes: not a ggml RPC server?")
            major, minor, patch = _recv(sock, size)[:3]
    except RemoteError:
        raise
    except (OSError, struct.error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise RemoteError(
            f"cannot reach the remote device {endpoint} ({reason}): is `tandem rpc-server` running there, "
            "and is the port open on that machine?"
        ) from None
    if major != PROTO_MAJOR or minor > PROTO_MINOR:
        raise RemoteError(
            f"the server at {endpoint} speaks RPC protocol {major}.{minor}.{patch}, this Tandem's llama.cpp "
            f"speaks {PROTO_MAJOR}.{PROTO_MINOR}: run the same Tandem version on both machines"
        )
    return major, minor, patch


def _recv(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise OSError(0, "the server closed the connection during the handshake")
        data += chunk
    return data


# ---------------------------------------------------------------- ggml's side


def _lib_dir() -> Path:
    import llama_cpp

    return Path(llama_cpp.__file__).parent / "lib"


def _load(name: str) -> ctypes.CDLL:
    # The wheel ships libggml.so; the desktop package keeps only the SONAME (libggml.so.0).
    lib_dir = _lib_dir()
    candidates = [lib_dir / f"lib{name}.so", *sorted(lib_dir.glob(f"lib{name}.so.*")),
                  lib_dir / f"lib{name}.dylib", lib_dir / f"{name}.dll"]
    for path in candidates:
        if path.exists():
            return ctypes.CDLL(str(path))
    raise RemoteError(
        f"this llama.cpp build has no RPC backend (lib{name} missing): reinstall with `make run`, "
        "which builds llama.cpp with -DGGML_RPC=ON"
    )


_libs: dict[str, ctypes.CDLL] = {}
_SIGNATURES = {
    "ggml_backend_rpc_add_server": ([ctypes.c_char_p], ctypes.c_void_p),
    "ggml_backend_rpc_start_server": (
        [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)], None),
    "ggml_backend_reg_dev_count": ([ctypes.c_void_p], ctypes.c_size_t),
    "ggml_backend_reg_dev_get": ([ctypes.c_void_p, ctypes.c_size_t], ctypes.c_void_p),
    "ggml_backend_dev_count": ([], ctypes.c_size_t),
    "ggml_backend_dev_get": ([ctypes.c_size_t], ctypes.c_void_p),
    "ggml_backend_dev_type": ([ctypes.c_void_p], ctypes.c_int),
    "ggml_set_abort_callback": ([ctypes.c_void_p], ctypes.c_void_p),
}


def _fn(name: str) -> Any:
    """A ggml function from whichever of its libraries defines it (the split between
    ggml-base, ggml and ggml-rpc moves between llama.cpp versions)."""
    if not _libs:
        import llama_cpp  # noqa: F401  (loads ggml's libraries in the order they need)

        _libs["ggml"] = _load("ggml")
        _libs["base"] = _load("ggml-base")
        with contextlib.suppress(RemoteError):  # a build without RPC still lists its devices
            _libs["rpc"] = _load("ggml-rpc")
    for lib in _libs.values():
        with contextlib.suppress(AttributeError):
            f = getattr(lib, name)
            f.argtypes, f.restype = _SIGNATURES[name]
            return f
    if name.startswith("ggml_backend_rpc") and "rpc" not in _libs:
        raise RemoteError("this llama.cpp build has no RPC backend: reinstall with `make run`, "
                          "which builds llama.cpp with -DGGML_RPC=ON")
    raise RemoteError(f"this llama.cpp build lacks {name}")


def available() -> bool:
    """Whether the installed llama.cpp was built with the RPC backend."""
    try:
        _fn("ggml_backend_rpc_add_server")
    except (RemoteError, OSError):
        return False
    return True


class RemoteDevices:
    """The devices of the listed servers, as a NULL-terminated array for
    llama_model_params.devices (kept alive as long as this object)."""

    def __init__(self, endpoints: list[str]) -> None:
        if not endpoints:
            raise ValueError("no endpoints")
        self.endpoints = list(endpoints)
        for endpoint in self.endpoints:
            hello(endpoint)  # clear errors before ggml, which would abort
        devices: list[int] = []
        for endpoint in self.endpoints:
            reg = _fn("ggml_backend_rpc_add_server")(endpoint.encode())
            if not reg:
                raise RemoteError(f"the server at {endpoint} offers no device")
            count = _fn("ggml_backend_reg_dev_count")(reg)
            devices += [_fn("ggml_backend_reg_dev_get")(reg, i) for i in range(count)]
        self.devices = devices
        self._arrays: list[ctypes.Array] = []  # what llama.cpp was handed stays alive with us
        install_abort_message(self.endpoints)

    def device_array(self, local: list[int] | None = None) -> int:
        """Address of a NULL-terminated array of `local` devices then the remote ones."""
        devices = [*(local or []), *self.devices]
        array = (ctypes.c_void_p * (len(devices) + 1))(*devices, None)
        self._arrays.append(array)
        return ctypes.addressof(array)

    def describe(self) -> str:
        return ", ".join(self.endpoints)


def local_devices(kinds: tuple[int, ...] = (1, 2)) -> list[int]:
    """This machine's devices of the given ggml_backend_dev_type (0 CPU, 1 GPU,
    2 integrated GPU); the default, GPU-like ones, is what a local model offloads to."""
    get, kind = _fn("ggml_backend_dev_get"), _fn("ggml_backend_dev_type")
    return [dev for i in range(_fn("ggml_backend_dev_count")()) if kind(dev := get(i)) in kinds]


# ---------------------------------------------------------------- aborts


_ABORT_CB = ctypes.CFUNCTYPE(None, ctypes.c_char_p)
_abort_state: dict[str, object] = {}


def install_abort_message(endpoints: list[str]) -> None:
    """When ggml aborts because a server stopped answering, say so in one line and
    exit with EXIT_REMOTE_LOST instead of dying by SIGABRT with a backtrace."""

    def on_abort(message: bytes | None) -> None:
        text = (message or b"").decode("utf-8", "replace").strip()
        if "RPC" in text or "connect" in text.lower():
            where = ", ".join(endpoints)
            print(f"tandem: error: the remote device {where} stopped answering ({text})", file=sys.stderr, flush=True)
            os._exit(EXIT_REMOTE_LOST)
        print(f"tandem: error: llama.cpp stopped: {text}", file=sys.stderr, flush=True)

    callback = _ABORT_CB(on_abort)
    _abort_state["callback"] = callback  # ctypes callbacks must outlive their registration
    _fn("ggml_set_abort_callback")(ctypes.cast(callback, ctypes.c_void_p))


# ---------------------------------------------------------------- serving


def serve(host: str, port: int, threads: int, cache_dir: str | None = None) -> None:
    """Run ggml's RPC server on this machine's best devices (its GPUs, else the CPU).
    Blocks until the process is stopped."""
    devices = local_devices() or local_devices((0,))
    if not devices:
        raise RemoteError("llama.cpp reports no device to serve")
    array = (ctypes.c_void_p * len(devices))(*devices)
    endpoint = f"{host}:{port}"
    with contextlib.suppress(KeyboardInterrupt):
        _fn("ggml_backend_rpc_start_server")(
            endpoint.encode(), cache_dir.encode() if cache_dir else None, threads, len(devices), array)
    # start_server returns only when it could not start (e.g. the port is taken)
    raise RemoteError(f"could not serve on {endpoint} (port in use, or the address is not this machine's?)")
