"""OWA: the h11 session on raw bytes, and the application over an in-memory MailAccess (tests only)."""

from __future__ import annotations

import base64
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from nodeagent.exchange.owa import HttpRequest, HttpSession, MessageSummary, OwaApp, Rejected, Site, summarize

GET = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"


def test_get_pipelined_and_keepalive() -> None:
    s = HttpSession()
    ev = s.receive(GET + b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [e.target for e in ev if isinstance(e, HttpRequest)] == ["/a"]
    nxt = s.respond(200, [], b"A")
    assert [e.target for e in nxt if isinstance(e, HttpRequest)] == ["/b"]
    s.respond(200, [], b"B")
    out = s.data_to_send()
    assert out.count(b"HTTP/1.1 200 OK") == 2 and b"Server: Microsoft-IIS/6.0" in out and not s.closed


def test_byte_at_a_time() -> None:
    s = HttpSession()
    events: list[object] = []
    for b in GET:
        events += s.receive(bytes([b]))
    assert len(events) == 1


def test_bad_request_and_oversize() -> None:
    s = HttpSession()
    assert s.receive(b"\x00garbage\r\n\r\n") == [] and s.closed and b" 400 " in s.data_to_send()
    s = HttpSession(max_body=10)
    s.receive(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n")
    assert s.closed and b" 413 " in s.data_to_send()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_arbitrary_bytes_never_raise(chunks: list[bytes]) -> None:
    s = HttpSession()
    for c in [*chunks, b""]:
        for e in s.receive(c):
            if isinstance(e, HttpRequest):
                s.respond(200, [], b"ok")
        s.data_to_send()


class Mem:
    def __init__(self) -> None:
        self.users = {"alice": "pw", "bob": "pw2"}
        self.boxes: dict[str, list[tuple[int, bytes, bool]]] = {u: [] for u in self.users}

    async def authenticate(self, user: str, password: str) -> bool:
        return self.users.get(user) == password

    async def list_messages(self, user: str) -> list[MessageSummary]:
        return [summarize(u, r, s) for u, r, s in self.boxes[user]]

    async def get_message(self, user: str, uid: int) -> bytes | None:
        return next((r for u, r, _ in self.boxes[user] if u == uid), None)

    async def submit(self, sender: str, recipients: Sequence[str], raw: bytes) -> None:
        for r in recipients:
            name = r.split("@")[0]
            if name not in self.boxes:
                raise Rejected(f"{r}: user unknown")
            self.boxes[name].append((len(self.boxes[name]) + 1, raw, False))

    async def mark_seen(self, user: str, uid: int) -> None:
        self.boxes[user] = [(u, r, s or u == uid) for u, r, s in self.boxes[user]]


def req(method: str, target: str, user: str | None = None, body: bytes = b"", **h: str) -> HttpRequest:
    headers = [(k.replace("_", "-"), v) for k, v in h.items()]
    if user:
        headers.append(("authorization", "Basic " + base64.b64encode(user.encode()).decode()))
    return HttpRequest(method, target, tuple(headers), body)


async def test_app_auth_inbox_escape_and_send() -> None:
    mem = Mem()
    app = OwaApp(Site("EVS1.wolfpack.lab", "wolfpack.lab", "NODE1"), mem)
    r = await app.serve(req("GET", "/exchange/alice/"), 0)
    assert r.status == 401 and ("WWW-Authenticate", 'Basic realm="EVS1.wolfpack.lab"') in r.headers
    assert (await app.serve(req("GET", "/exchange/bob/", "alice:pw"), 0)).status == 403
    mem.boxes["alice"].append((1, b"From: x@y\r\nSubject: <script>alert(1)</script>\r\n\r\nhi\r\n", False))
    r = await app.serve(req("GET", "/exchange/alice/", "alice:pw"), 0)
    assert (
        r.status == 200 and b"&lt;script&gt;" in r.body and b"<script>" not in r.body and b"NODE1" in r.body
    )
    r = await app.serve(req("GET", "/api/mailbox/alice", "alice:pw"), 0)
    assert b'"uid": 1' in r.body
    r = await app.serve(
        req(
            "POST",
            "/exchweb/bin/auth/owaauth.dll",
            body=b"username=alice&password=pw&destination=/exchange/",
            content_type="application/x-www-form-urlencoded",
        ),
        0,
    )
    cookie = dict(r.headers)["Set-Cookie"].split(";")[0]
    assert r.status == 302 and dict(r.headers)["Location"] == "/exchange/alice/"
    body = f"canary={app._canary('alice')}&to=bob&subject=hello&body=text".encode()
    r = await app.serve(
        req(
            "POST",
            "/exchange/alice/new",
            body=body,
            cookie=cookie,
            content_type="application/x-www-form-urlencoded",
        ),
        1,
    )
    assert r.status == 303 and b"Subject: hello" in mem.boxes["bob"][0][1]
