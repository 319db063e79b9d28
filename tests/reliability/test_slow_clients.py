"""Slow and huge clients on a real server (loopback, bounded): uploads trickling in a byte at a
time do not hold up other clients; a body over the limit is answered 413 before it has all been
sent; a large batch being written does not hold up reads. The server here takes bodies up to 1 MiB,
so that the huge body is refused after little sending."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests import factories as f
from tests.reliability import support as s

SLOW_CLIENTS = 40
TRICKLE_SECONDS = 6.0


@pytest.fixture(scope="module")
def served(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[s.Server, str, str]]:
    workdir = tmp_path_factory.mktemp("slow-clients")
    database_url = module_database_url
    env = s.env_for(workdir, database_url, max_body_bytes=1024 * 1024)
    _, regulator_key = s.bootstrap(env, workdir)
    with s.Server(workdir, env) as server:
        regulator = s.Api(server.url, regulator_key)
        _, maker_key = s.make_enterprise(regulator, ["battery_maker"], codes=["0AB"])
        regulator.close()
        yield server, maker_key, database_url


def connect(server: s.Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=30)


def response_status(sock: socket.socket, timeout: float = 30.0) -> int:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


def test_slow_uploads_do_not_hold_up_other_clients(served: tuple[s.Server, str, str]) -> None:
    server, key, _ = served
    api = s.Api(server.url, key)
    code = f.code()
    assert api.event(f.event("manufactured", code, 0, f.MANUFACTURED)).status_code == 201
    stop = threading.Event()
    slow: list[socket.socket] = []

    def trickle() -> None:
        # half of them never finish their headers, half never finish their body
        for i in range(SLOW_CLIENTS):
            sock = connect(server)
            slow.append(sock)
            head = f"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            if i % 2:
                sock.sendall(
                    (head + "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{").encode()
                )
            else:
                sock.sendall(head.encode())
        while not stop.is_set():
            for sock in slow:
                with contextlib.suppress(OSError):  # the server may have given up on it
                    sock.sendall(b" ")
            stop.wait(0.5)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        time.sleep(1.0)  # every slow client connected and sending
        deadline = time.monotonic() + TRICKLE_SECONDS
        served_meanwhile = 0
        slowest = 0.0
        while time.monotonic() < deadline:
            began = time.monotonic()
            assert api.get(f"/api/v1/batteries/{code}").status_code == 200
            r = api.event(f.event("maintained", code, 1, {"soh_percent": 90}))
            assert r.status_code in (201, 409), r.text  # recorded, or refused by the rules: answered
            slowest = max(slowest, time.monotonic() - began)
            served_meanwhile += 1
        assert served_meanwhile >= 5, f"only {served_meanwhile} rounds answered beside the slow clients"
        assert slowest < 5.0, f"a request took {slowest:.1f} s beside the slow clients"
        assert len(slow) == SLOW_CLIENTS
    finally:
        stop.set()
        thread.join(timeout=30)
        for sock in slow:
            sock.close()
        api.close()


def test_a_body_over_the_limit_is_refused_before_it_is_all_sent(served: tuple[s.Server, str, str]) -> None:
    server, key, _ = served
    limit = 1024 * 1024
    # declared too large: refused before a byte of the body is sent
    sock = connect(server)
    sock.sendall(
        (
            f"POST /api/v1/events/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {100 * limit}\r\n\r\n"
        ).encode()
    )
    assert response_status(sock) == 413
    sock.close()
    # not declared (chunked): cut off once past the limit, while the client is still sending
    sock = connect(server)
    sock.sendall(
        (
            f"POST /api/v1/events/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode()
    )
    chunk = b"x" * 65536
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    answered = False
    sock.setblocking(False)
    while sent < 64 * limit:
        readable, writable, _ = select.select([sock], [sock], [], 10)
        if readable:
            answered = True
            break
        if not writable:
            break
        try:
            sent += sock.send(frame)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:  # the server closed the connection after answering
            answered = True
            break
    sock.setblocking(True)
    assert answered, "no answer while the body was still being sent"
    assert response_status(sock) == 413
    assert sent < 8 * limit, f"{sent} bytes went in before the refusal"
    sock.close()
    # the server goes on serving
    api = s.Api(server.url, key)
    assert api.get("/api/v1/batteries").status_code == 200
    api.close()


def test_a_huge_batch_being_written_does_not_hold_up_reads(served: tuple[s.Server, str, str]) -> None:
    server, key, database_url = served
    # 2,000 events: as many as the 1 MiB body limit of this server lets through in one request
    api = s.Api(server.url, key)
    code = f.code()
    assert api.event(f.event("manufactured", code, 0, f.MANUFACTURED)).status_code == 201
    events = s.manufactured_batch(2000, minutes=1)
    assert len(json.dumps({"events": events})) < 1024 * 1024
    busy = s.write_in_progress(database_url)
    result: dict[str, object] = {}

    def write() -> None:
        writer = s.Api(server.url, key)
        try:
            result["answer"] = writer.batch(events)
        finally:
            writer.close()

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    reads_during_write = 0
    deadline = time.monotonic() + 120
    while thread.is_alive() and time.monotonic() < deadline:
        if busy():
            r = api.get(f"/api/v1/batteries/{code}")
            assert r.status_code == 200
            if busy():  # the read was answered while the batch's transaction was still open
                reads_during_write += 1
        else:
            time.sleep(0.005)
    thread.join(timeout=120)
    api.close()
    answer = result["answer"]
    assert getattr(answer, "status_code", None) == 200
    assert reads_during_write >= 1, "no read was answered while the batch was being written"
