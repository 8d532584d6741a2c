#!/usr/bin/env python3
"""Writes the seed corpora: valid conversations and typical garbage.

The fuzzer mutates these; `cargo test` replays every file in fuzz/corpus/ through
zferry_core::fuzzing, so seeds and found crashes stay regression tests.
Run from the repository root: python3 fuzz/make_seeds.py
"""
import os, struct

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)

def pstr(s):
    b = s.encode()
    return varint(len(b)) + b

def frame(kind, payload=b"", flags=0):
    return bytes([kind, flags, 0, 0]) + struct.pack(">I", len(payload)) + payload

HANDSHAKE, RPC_HEADER, RPC_BODY, DATA, END, ABORT, CREDIT, HEARTBEAT, GOODBYE = range(1, 10)
MAGIC = b"ZFERRY\r\n"

def hello(role, version=1):  # role: 0 client, 1 server
    return frame(HANDSHAKE, MAGIC + struct.pack(">I", version) + varint(role) + varint(4096) + varint(65536) + pstr("seed"))

def request(method, stream, body=b""):
    return frame(RPC_HEADER, pstr(method) + bytes([1 if stream else 0])) + frame(RPC_BODY, body)

def response_ok(stream, body=b""):
    return frame(RPC_HEADER, b"\x00" + bytes([1 if stream else 0])) + frame(RPC_BODY, body)

def response_err(kind, msg):
    return frame(RPC_HEADER, b"\x01" + varint(kind) + pstr(msg) + b"\x00")

def write(target, name, data):
    d = os.path.join("fuzz", "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

upload = request("zferry.probe", True, varint(3000)) + frame(DATA, b"a" * 1000) * 3 + frame(END)
frames = {
    "handshake": hello(0),
    "upload": hello(0) + upload,
    "heartbeat_goodbye": hello(0) + frame(HEARTBEAT) + frame(GOODBYE, b"bye"),
    "abort": hello(0) + request("zferry.probe", True, varint(5)) + frame(DATA, b"abc") + frame(ABORT, b"disk full"),
    "credit": hello(1) + frame(CREDIT, struct.pack(">Q", 65536)),
    "cancel": hello(1) + frame(ABORT, b"stop", flags=1),
    "http": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "tls_hello": bytes.fromhex("160301020001000001fc0303") + b"\x00" * 40,
    "oversized": frame(RPC_BODY)[:4] + struct.pack(">I", 0xFFFFFFFF),
    "version2": hello(0, version=2),
}
for name, data in frames.items():
    for step in (0, 7, 31):
        write("frame_decoder", f"{name}-{step}", bytes([step]) + data)

# rpc_session: [mode][chunk step][bytes]; mode bit 0 = valid peer handshake first,
# bit 1 = we are the client, bit 2 = our request carries a stream.
server_conversations = {
    "upload": upload,
    "two_requests": request("x", False, b"") + frame(HEARTBEAT) + request("y", False, b"\x01"),
    "abort": request("zferry.probe", True, varint(5)) + frame(DATA, b"abc") + frame(ABORT, b"disk full"),
    "goodbye": frame(GOODBYE, b"shutting down"),
    "data_without_stream": frame(DATA, b"zzz"),
    "credit_overrun": request("zferry.probe", True, b"\x00") + frame(DATA, b"x" * 4096) * 17,
}
for name, data in server_conversations.items():
    write("rpc_session", f"server-{name}", bytes([1, 64]) + data)
client_conversations = {
    "ok": response_ok(False),
    "ok_stream": response_ok(True) + frame(DATA, b"q" * 2000) + frame(END),
    "error": response_err(2, "outside your subtree"),
    "credit": frame(CREDIT, struct.pack(">Q", 4096)) + response_ok(False),
    "cancel": frame(ABORT, b"no space", flags=1),
}
for name, data in client_conversations.items():
    write("rpc_session", f"client-{name}", bytes([3, 64]) + data)
    write("rpc_session", f"client-stream-{name}", bytes([7, 64]) + data)
write("rpc_session", "raw-http", bytes([0, 5]) + b"GET / HTTP/1.1\r\n\r\n")
write("rpc_session", "raw-hello", bytes([0, 9]) + hello(0))
write("rpc_session", "raw-version2", bytes([2, 9]) + hello(1, version=2))
