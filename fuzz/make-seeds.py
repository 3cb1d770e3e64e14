#!/usr/bin/env python3
"""Write the fuzzers' seed corpora (fuzz/corpus/NAME/), small and
deterministic: a few valid inputs of each kind for the fuzzer to mutate.
Run from anywhere; rewrites the seed-* files (regress-* files, inputs that
once failed, are kept)."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(name, seeds):
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.startswith("seed-"):
            os.remove(os.path.join(d, f))
    for i, data in enumerate(seeds):
        with open(os.path.join(d, "seed-%02d" % i), "wb") as f:
            f.write(data)


# ------------------------------------------------------------------ frames
# byte 0: version (% 3) and limits ((>> 2) % 3); byte 1: chunk seed
FRAMES = [
    b"CONNECT\naccept-version:1.2\nhost:x\nheart-beat:0,0\n\n\0",
    b"SEND\ndestination:/queue/a\nreceipt:r1\ncontent-type:text/plain\n\nhello\0\n\n",
    b"SEND\ndestination:/queue/a\ncontent-length:5\n\nab\0cd\0",
    b"SEND\r\ndestination:/queue/a\r\nh:a\\cb\\\\c\\nd\\re\r\n\r\nbody\0",
    b"SUBSCRIBE\nid:1\ndestination:/topic/t\nselector:x LIKE '%a_'\nack:client-individual\n\n\0"
    b"ACK\nid:7\n\n\0\nDISCONNECT\nreceipt:bye\n\n\0",
    b"\n\n\r\nMESSAGE\nsubscription:1\nmessage-id:m1\ndestination:/queue/a\ncontent-length:0\n\n\0",
    b"SEND\ndestination:/queue/a\nreceipt:r2\nh:\\t\n\n\0",
    b"SEND\ndestination:/queue/a\n" + b"".join(b"h%d:v\n" % i for i in range(20)) + b"\n\0",
    b"SEND\ndestination:/queue/a\ncontent-length:100000\n\n",
]
write("frame", [bytes([v | (lim << 2), seed]) + f
                for i, f in enumerate(FRAMES) for v, lim, seed in [(i % 3, i % 3, 7 * i + 1)]])

# ------------------------------------------------------------------ selectors
SELECTORS = [
    ("JMSType = 'car' AND color = 'blue' AND weight > 2500", "JMSType=car\ncolor=blue\nweight=3000"),
    ("s LIKE 'h_llo%' ESCAPE '!' OR n BETWEEN 1 AND 10", "s=h\xc3\xa9llo world\nn=5"),
    ("x IN ('a', 'b', 'c') AND NOT (y IS NULL)", "x=b\ny=1"),
    ("(a + 2) * 3 / 4 - -1 >= 2.5e0 AND b <> 'it''s'", "a=1\nb=its"),
    ("v LIKE '%a%b%a' AND v NOT LIKE '\\%%' ESCAPE '\\'", "v=xaxbxbxa"),
    ("t = TRUE OR f = FALSE OR missing IS NOT NULL", "t=true\nf=false"),
]
LIKES = [
    ("%foo%", "", "a foo b"),
    ("h_llo", "", "h\xc3\xa9llo"),
    ("50!%", "!", "50%"),
    ("%a%b%a", "", "xaxbxbxa"),
    ("%a_____b", "", "zzazzzzzb"),
    ("\xe2\x82\xac%\xf0\x9d\x84\x9e_", "", "\xe2\x82\xac x \xf0\x9d\x84\x9e\xc3\xa9"),
]
write("selector",
      [b"\0" + s.encode("utf-8", "surrogateescape") + b"\0" + h.encode("latin-1") for s, h in SELECTORS] +
      [b"\1" + p.encode("latin-1") + b"\0" + e.encode() + b"\0" + v.encode("latin-1") for p, e, v in LIKES])


# ------------------------------------------------------------------ journal
def u8(v):
    return struct.pack(">B", v)


def u32(v):
    return struct.pack(">I", v)


def u64(v):
    return struct.pack(">Q", v)


def s(b):
    if isinstance(b, str):
        b = b.encode()
    return u32(len(b)) + b


def message(seq, dest, body, headers=()):
    out = u64(seq) + u64(1700000000000) + u64(0) + u8(4) + u8(1) + s("ID-x-%d" % seq) + s(dest)
    out += u32(len(headers))
    for k, v in headers:
        out += s(k) + s(v)
    return out + s(body)


def entry(epoch, lsn, ops):
    return u8(1) + u64(epoch) + u64(lsn) + u32(len(ops)) + b"".join(ops)


OPS = [
    u8(1) + s("/queue/a") + u32(0) + s("") + s(message(1, "/queue/a", "hello", [("k", "v")])),
    u8(1) + s("/topic/t") + u32(2) + s("c1") + s("d1") + s("c2") + s("d2") + s("dup-1") +
    s(message(2, "/topic/t", b"\0bin\0")),
    u8(2) + s("/queue/a") + u64(1),
    u8(3) + s("c1") + s("d1") + u64(2),
    u8(4) + u8(ord("Q")) + s("/queue/a") + s("") + u64(1) + u32(3),
    u8(5) + s("c1") + s("d1") + s("/topic/t") + s("x > 1"),
    u8(6) + s("c1") + s("d1"),
    u8(7) + s("/queue/a"),
    u8(8) + s("dup-1"),
]
ENTRIES = [entry(1, 1, OPS[:1]), entry(2, 7, OPS), entry(3, 9, [OPS[5], OPS[1], OPS[3]]), entry(1, 2, [])]
write("journal", ENTRIES + [message(5, "/queue/m", "just a message", [("a", "1"), ("b", "")])])


# ------------------------------------------------------------------ replication
def frame(t, payload):
    return u32(len(payload) + 1) + u8(t) + payload


HELLO = frame(1, u32(3) + s("s3cret") + s("node-1") + u64(1) + u64(9) + u64(1) + u64(0x1234))
WELCOME = frame(2, u64(2) + s("master-1") + u8(1) + u8(0) + u64(10) + s("127.0.0.1:8161") + u64(12))
ENTRIES_F = frame(7, u64(2) + u32(2) + u8(1) + s(ENTRIES[0]) + u8(0) + s(ENTRIES[1]))
write("repl", [
    HELLO + frame(8, u64(10) + u64(9)) + frame(9, u64(77) + u64(0)) + frame(10, u64(77)),
    WELCOME + ENTRIES_F + frame(9, u64(5) + u64(12)),
    frame(2, u64(2) + s("m") + u8(0) + u8(1) + u64(1) + s("") + u64(0)) + frame(4, u64(2) + u64(8)) +
    frame(5, u32(1) + s("Qkey") + s("value")) + frame(6, u64(8) + u64(2) + u64(0x99)),
    frame(3, s("wrong security token")),
])

# ------------------------------------------------------------------ HTTP heads
HEADS = [
    b"GET /stomp HTTP/1.1\r\nHost: 127.0.0.1:61623\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: v12.stomp, v11.stomp\r\nOrigin: http://localhost\r\n\r\n",
    b"GET / HTTP/1.0\n\n",
    b"POST /api/send HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX-Long:  a  \t\r\n\r\n{}",
    b"GET /x?a=%20&b HTTP/1.1\r\nHost: a\r\nhost: b\r\nFolded: one\r\n two\r\n\r\n",
    b"BREW / HTTP/1.1\r\n\r\n",
]
write("http", HEADS)
