"""The HTTP virtual server: Outlook Web Access 2003 over a sans-IO HTTP/1.1 session (h11).

Theory of operation
-------------------
Three layers, one per section below:

1. ``HttpSession`` - HTTP/1.1 as bytes in, events out, on h11 (the well-kept sans-IO HTTP
   library). ``receive(bytes)`` returns an ``HttpRequest`` once a request is complete (head and
   body); the host answers it with ``respond(status, headers, body)``, which serializes through
   h11 and returns the events that follow: h11 parses one request at a time, so a pipelined
   request waiting in the buffer is parsed when the previous cycle ends (``start_next_cycle``),
   and it comes out of ``respond`` (the pattern of the other protocol machines, sansio.py).
   Keep-alive and ``Connection: close`` are h11's. Limits: a request head over
   ``max_header`` octets -> 431; a body over ``max_body`` (declared or chunked) -> 413; malformed
   input -> 400; each of these answers once and closes. ``receive`` never raises.
2. ``OwaApp`` - the application: ``serve(request, now)`` -> ``HttpResponse``, over a
   ``MailAccess`` (the mailbox store, reached by awaiting: the real one talks to the store
   process). Routing, authentication and the forms are pure; the pages are owapages.py.
   Authentication: HTTP Basic (OWA 2003's default: ``401`` with
   ``WWW-Authenticate: Basic realm="EVS1.<domain>"``) or forms-based (the OWA 2003 logon form
   at ``/exchweb/bin/auth/owalogon.asp``, posted to ``owaauth.dll``; a random session token in
   a cookie, held in this process's session table, ending after 15 min idle for a public
   computer and 24 h for a private one). The product requires SSL for forms-based
   authentication; the lab allows it on plain HTTP. A user sees only their own mailbox (403).
   The send form carries a canary (an HMAC of the user under a per-process secret) so another
   site cannot post mail in a logged-on user's name.
3. The host hooks: ``http_session`` (the ``SessionFactory`` of service.py's ``PROTOCOLS``
   entry) and ``handle`` (its ``EventHandler``: awaits the application, adds the ``Date``
   header - the clock lives here - and responds). The ``MailAccess`` of a listener comes from
   ``mail_access_for(connection)``: the spec's ``options.mail_access`` names a
   ``module:attr`` factory of one (the wiring to the store process plugs in there). With none,
   the server still answers, every page with 503 naming the reason, and logs it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http
import http.cookies
import json
import logging
import re
import secrets
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, getaddresses, make_msgid
from typing import Protocol

import h11

from nodeagent.exchange import owapages as pages
from nodeagent.exchange.owapages import MessageSummary, MessageView, Site, summarize, view_message
from nodeagent.exchange.service import Connection, Session, SpecError, load_object

__all__ = [
    "HttpRequest", "HttpResponse", "HttpSession", "MailAccess", "MailAccessError", "MessageSummary",
    "MessageView", "NoMailAccess", "OwaApp", "OwaSession", "Rejected", "Site", "Unavailable",
    "handle", "http_session", "mail_access_for", "make_factory", "summarize", "view_message",
]  # fmt: skip

log = logging.getLogger("nodeagent.exchange.owa")

SERVER_HEADER = "Microsoft-IIS/6.0"
MAX_HEADER = 16 * 1024  # request line + headers
MAX_BODY = 10 * 1024 * 1024  # a request body (a sent message with its text)


# == 1. the HTTP session ==============================================================================
@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A complete request. Header names are lower case; values decoded as ISO-8859-1 (RFC 9110)."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class HttpSession:
    """One HTTP/1.1 server connection, sans-IO (``service.Session``)."""

    def __init__(self, *, max_header: int = MAX_HEADER, max_body: int = MAX_BODY) -> None:
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header)
        self._max_body = max_body
        self._out = bytearray()
        self._closed = False
        self._eof = False
        self._head: h11.Request | None = None
        self._body = bytearray()
        self._waiting = False  # a request went out as an event and awaits respond()

    # -- Session ----------------------------------------------------------------------------------
    def receive(self, data: bytes) -> list[object]:
        if self._closed or self._eof:
            return []
        self._eof = not data
        self._conn.receive_data(data)
        return self._parse()

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def waiting(self) -> bool:
        """True while a request has been handed out and not yet answered."""
        return self._waiting

    # -- the answer ---------------------------------------------------------------------------------
    def respond(
        self, status: int, headers: Iterable[tuple[str, str]] = (), body: bytes = b""
    ) -> list[object]:
        """Answer the request handed out last; returns the events that follow (pipelined requests).

        Raises ``RuntimeError`` when no request is waiting, ``h11.LocalProtocolError`` for a header
        h11 refuses to send (both bugs of the caller).
        """
        if not self._waiting or self._head is None:
            raise RuntimeError("respond() without a request waiting for its answer")
        self._waiting = False
        self._send(status, list(headers), body, head_only=self._head.method == b"HEAD")
        if self._conn.our_state is h11.DONE and self._conn.their_state is h11.DONE:
            self._conn.start_next_cycle()
            return self._parse()
        self._closed = True  # MUST_CLOSE: Connection: close, or an HTTP/1.0 client
        return []

    # -- inside -------------------------------------------------------------------------------------
    def _parse(self) -> list[object]:
        events: list[object] = []
        while not self._closed and not self._waiting:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as e:
                self._fail(e.error_status_hint, str(e))
                break
            if event is h11.NEED_DATA or event is h11.PAUSED:
                break
            if isinstance(event, h11.Request):
                self._head, self._body = event, bytearray()
                if self._declared_length(event) > self._max_body:
                    self._fail(413, f"request body over {self._max_body} octets")
                    break
                if self._conn.they_are_waiting_for_100_continue:
                    self._out += (
                        self._conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
                    )
            elif isinstance(event, h11.Data):
                if len(self._body) + len(event.data) > self._max_body:
                    self._fail(413, f"request body over {self._max_body} octets")
                    break
                self._body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert self._head is not None
                head = self._head
                events.append(HttpRequest(
                    head.method.decode("ascii", "replace"), head.target.decode("ascii", "replace"),
                    tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers),
                    bytes(self._body),
                ))  # fmt: skip
                self._body = bytearray()
                self._waiting = True
            elif isinstance(event, h11.ConnectionClosed):
                self._closed = True
        return events

    @staticmethod
    def _declared_length(head: h11.Request) -> int:
        for name, value in head.headers:
            if name == b"content-length":
                return int(value)  # h11 has checked it is a number
        return 0

    def _fail(self, status: int, why: str) -> None:
        """Answer a request we cannot serve (if an answer is still possible), then close."""
        if self._conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = f"{status} {_reason(status).decode()}: {why}\r\n".encode()
            # h11 may refuse to frame an answer here (e.g. mid-response): closing then says enough
            with contextlib.suppress(h11.LocalProtocolError):
                text = [("Content-Type", "text/plain; charset=utf-8")]
                self._send(status, text, body, head_only=False, close=True)
        self._waiting = False
        self._closed = True

    def _send(
        self,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        head_only: bool,
        close: bool = False,
    ) -> None:
        names = {k.lower() for k, _ in headers}
        full = [("Server", SERVER_HEADER), *headers]
        if "content-length" not in names and status >= 200 and status not in (204, 304):
            full.append(("Content-Length", str(len(body))))
        if close and "connection" not in names:
            full.append(("Connection", "close"))
        self._out += (
            self._conn.send(h11.Response(status_code=status, headers=full, reason=_reason(status))) or b""
        )
        if body and not head_only:
            self._out += self._conn.send(h11.Data(data=body)) or b""
        self._out += self._conn.send(h11.EndOfMessage()) or b""


# == 2. the application ================================================================================
class MailAccessError(Exception):
    """A mailbox operation that did not happen; the message says why, in a sentence."""


class Unavailable(MailAccessError):
    """The store cannot be reached or is not mounted (the pages answer 503)."""


class Rejected(MailAccessError):
    """A message the store or transport refuses (unknown recipient, over a limit, ...)."""


class NoMailAccess(Exception):
    """No ``MailAccess`` is configured for a listener (``mail_access_for``)."""


class MailAccess(Protocol):
    """What OWA needs of the mailbox store. Every method may raise ``Unavailable``."""

    async def authenticate(self, user: str, password: str) -> bool: ...

    async def list_messages(self, user: str) -> list[MessageSummary]: ...

    async def get_message(self, user: str, uid: int) -> bytes | None: ...

    async def submit(self, sender: str, recipients: Sequence[str], raw: bytes) -> None:
        """Deliver (or queue durably) ``raw``; raises ``Rejected`` naming why it is not accepted."""
        ...

    async def mark_seen(self, user: str, uid: int) -> None: ...


FBA_PUBLIC_IDLE_S = 15 * 60.0  # "Public or shared computer" (OWA 2003's default)
FBA_PRIVATE_IDLE_S = 24 * 3600.0  # "Private computer"
MAX_FBA_SESSIONS = 10_000
MAX_RECIPIENTS = 100
MAX_FORM_FIELDS = 32
COOKIE = "sessionid"
LOGON = "/exchweb/bin/auth/owalogon.asp"
AUTH_DLL = "/exchweb/bin/auth/owaauth.dll"
LOGOFF = "/exchweb/bin/auth/owalogoff.asp"
_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+$")
_HTML = "text/html; charset=utf-8"
_JSON = "application/json; charset=utf-8"
# The pages need no script, frame or foreign resource: forbid them all.
_PAGE_HEADERS = (
    ("X-Powered-By", "ASP.NET"),
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
)


@dataclass(slots=True)
class _FbaSession:
    user: str
    idle_s: float
    last: float


class _BadRequest(Exception):
    pass


def _user_name(raw: str) -> str:
    """``DOMAIN\\alice``, ``alice@domain`` and ``alice`` all name the mailbox ``alice``."""
    name = raw.strip().rsplit("\\", 1)[-1]
    return name.split("@", 1)[0] if "@" in name else name


def _same_user(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()  # Windows account names are not case-sensitive


class OwaApp:
    """Outlook Web Access for one HTTP virtual server: request -> response over a ``MailAccess``."""

    def __init__(self, site: Site, access: MailAccess, secret: bytes | None = None) -> None:
        self.site = site
        self.access = access
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self._sessions: dict[str, _FbaSession] = {}

    # -- entry --------------------------------------------------------------------------------------
    async def serve(self, req: HttpRequest, now: float) -> HttpResponse:
        split = urllib.parse.urlsplit(req.target)
        path = urllib.parse.unquote(split.path)
        query = urllib.parse.parse_qs(split.query, max_num_fields=MAX_FORM_FIELDS) if split.query else {}
        as_json = path.startswith("/api/") or query.get("format") == ["json"]
        try:
            return await self._route(req, path, {k: v[0] for k, v in query.items()}, now)
        except Unavailable as e:
            return self._error(503, "Service Unavailable", str(e), as_json, extra=(("Retry-After", "5"),))
        except (_BadRequest, ValueError) as e:
            return self._error(400, "Bad Request", str(e) or "malformed request", as_json)

    # -- routing --------------------------------------------------------------------------------------
    async def _route(self, req: HttpRequest, path: str, q: dict[str, str], now: float) -> HttpResponse:
        get_only = ("GET", "HEAD")
        if path in ("/", "/exchange", "/public", "/exchweb"):
            return _redirect(301 if path != "/" else 302, path + "/" if path != "/" else "/exchange/")
        if path == "/exchweb/owa.css":
            return self._only(req, get_only) or HttpResponse(
                200, (("Content-Type", "text/css; charset=utf-8"), ("Cache-Control", "max-age=3600")),
                pages.CSS.encode(),
            )  # fmt: skip
        if path == LOGON:
            return self._only(req, get_only) or self._page(
                200, pages.login_page(self.site, _local(q.get("url")))
            )
        if path == AUTH_DLL:
            return self._only(req, ("POST",)) or await self._logon(req, now)
        if path == LOGOFF:
            return self._only(req, get_only) or self._logoff(req)
        if path == "/public/":
            return self._only(req, get_only) or self._page(200, pages.public_page(self.site))
        if path == "/exchange/":
            user = await self._user(req, now)
            return _redirect(302, f"/exchange/{_quote(user)}/" if user else f"{LOGON}?url=/exchange/")
        if path.startswith("/exchange/"):
            owner, slash, rest = path[len("/exchange/") :].partition("/")
            if not slash:
                return _redirect(301, f"/exchange/{_quote(owner)}/")
            return await self._mailbox(req, owner, rest, q, now, as_json=q.get("format") == "json")
        if path.startswith("/api/mailbox/"):
            owner, _, rest = path[len("/api/mailbox/") :].partition("/")
            return await self._mailbox(req, owner, rest, {"format": "json"}, now, as_json=True)
        return self._error(404, "Not Found", f"{path[:200]} is not here", path.startswith("/api/"))

    async def _mailbox(
        self, req: HttpRequest, owner: str, rest: str, q: dict[str, str], now: float, *, as_json: bool
    ) -> HttpResponse:
        user = await self._user(req, now)
        if user is None:
            return self._challenge(as_json)
        if not _same_user(user, owner):
            return self._error(403, "Forbidden", f"{user} may not open the mailbox of {owner}", as_json, user)
        rest = rest.strip("/")
        if rest == "":
            return self._only(req, ("GET", "HEAD")) or await self._inbox(user, q, as_json)
        if rest == "new" and not as_json:
            if req.method == "POST":
                return await self._send(req, user, now)
            return self._only(req, ("GET", "HEAD", "POST")) or self._page(
                200, pages.compose_page(self.site, user, self._canary(user)), user
            )
        if rest.isdigit() and len(rest) <= 12:
            return self._only(req, ("GET", "HEAD")) or await self._read(user, int(rest), q, as_json)
        return self._error(404, "Not Found", f"no item {rest[:100]} in this mailbox", as_json, user)

    # -- pages ------------------------------------------------------------------------------------------
    async def _inbox(self, user: str, q: dict[str, str], as_json: bool) -> HttpResponse:
        messages = sorted(await self.access.list_messages(user), key=lambda m: m.uid, reverse=True)
        if as_json:
            return _json(200, {
                "server": self.site.server, "node": self.site.node, "user": user,
                "messages": [
                    {"uid": m.uid, "from": m.sender, "subject": m.subject, "date": m.date, "size": m.size,
                     "seen": m.seen, "url": f"/exchange/{_quote(user)}/{m.uid}"}
                    for m in messages
                ],
            })  # fmt: skip
        notice = "Your message was sent." if q.get("sent") == "1" else ""
        return self._page(200, pages.inbox_page(self.site, user, messages, notice), user)

    async def _read(self, user: str, uid: int, q: dict[str, str], as_json: bool) -> HttpResponse:
        raw = await self.access.get_message(user, uid)
        if raw is None:
            return self._error(404, "Not Found", f"no message {uid} in this mailbox", as_json, user)
        if q.get("format") == "raw":
            return HttpResponse(200, (("Content-Type", "message/rfc822"), *_PRIVATE), raw)
        view = view_message(uid, raw)
        if as_json:  # the JSON view reads without marking: scripts' reads are not the user's
            return _json(200, {
                "uid": view.uid, "from": view.sender, "to": view.to, "cc": view.cc, "date": view.date,
                "subject": view.subject, "body": view.body, "attachments": list(view.attachments),
                "note": view.note,
            })  # fmt: skip
        await self.access.mark_seen(user, uid)
        return self._page(200, pages.message_page(self.site, user, view), user)

    async def _send(self, req: HttpRequest, user: str, now: float) -> HttpResponse:
        form = _form(req)
        if not hmac.compare_digest(form.get("canary", ""), self._canary(user)):
            why = "the form is stale or from another site: open New message again"
            return self._error(403, "Forbidden", why, False, user)
        to, cc, subject, text = (form.get(k, "") for k in ("to", "cc", "subject", "body"))

        def again(status: int, error: str) -> HttpResponse:
            page = pages.compose_page(self.site, user, self._canary(user), to=to, cc=cc, subject=subject,
                                      text=text, error=error)  # fmt: skip
            return self._page(status, page, user)

        try:
            rcpt_to, rcpt_cc = self._addresses(to), self._addresses(cc)
        except _BadRequest as e:
            return again(400, str(e))
        recipients = list(dict.fromkeys(rcpt_to + rcpt_cc))
        if not recipients:
            return again(400, "Type at least one recipient in To.")
        if len(recipients) > MAX_RECIPIENTS:
            return again(400, f"At most {MAX_RECIPIENTS} recipients per message.")
        sender = f"{user}@{self.site.domain}"
        raw = build_message(self.site, sender, rcpt_to, rcpt_cc, subject, text, now)
        try:
            await self.access.submit(sender, recipients, raw)
        except Rejected as e:
            return again(400, f"The message was not sent: {e}")
        return _redirect(303, f"/exchange/{_quote(user)}/?sent=1")

    def _addresses(self, field: str) -> list[str]:
        out = []
        for _, addr in getaddresses([field.replace(";", ",")]):
            addr = addr.strip()
            if not addr:
                continue
            if "@" not in addr:
                addr = f"{addr}@{self.site.domain}"  # a bare alias is a mailbox of this domain
            if not _ADDRESS.match(addr):
                raise _BadRequest(f"{addr[:100]} is not an e-mail address.")
            out.append(addr)
        if field.strip() and not out:
            raise _BadRequest(f"{field[:100]} is not an e-mail address.")
        return out

    # -- authentication -----------------------------------------------------------------------------
    async def _user(self, req: HttpRequest, now: float) -> str | None:
        """The logged-on user: the session cookie, else HTTP Basic credentials, else None."""
        token = _cookie(req, COOKIE)
        if token is not None:
            entry = self._sessions.get(token)
            if entry is not None and now - entry.last <= entry.idle_s:
                entry.last = now
                return entry.user
            self._sessions.pop(token, None)
        auth = req.header("authorization")
        if auth is not None:
            scheme, _, blob = auth.strip().partition(" ")
            if scheme.lower() == "basic":
                try:
                    decoded = base64.b64decode(blob.strip(), validate=True).decode("utf-8")
                    user, sep, password = decoded.partition(":")
                except ValueError:
                    return None
                name = _user_name(user)
                if sep and name and await self.access.authenticate(name, password):
                    return name
        return None

    async def _logon(self, req: HttpRequest, now: float) -> HttpResponse:
        form = _form(req)
        destination = _local(form.get("destination"))
        name, password = _user_name(form.get("username", "")), form.get("password", "")
        if not name or not await self.access.authenticate(name, password):
            error = ("You could not be logged on to Outlook Web Access. Make sure your domain\\user name "
                     "and password are correct, and then try again.")  # fmt: skip
            return self._page(200, pages.login_page(self.site, destination, error))
        idle = FBA_PRIVATE_IDLE_S if form.get("flags") == "4" else FBA_PUBLIC_IDLE_S
        self._expire(now)
        token = secrets.token_urlsafe(32)
        self._sessions[token] = _FbaSession(name, idle, now)
        if destination in ("/exchange/", "/"):
            destination = f"/exchange/{_quote(name)}/"
        cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax"
        return _redirect(302, destination, (("Set-Cookie", cookie),))

    def _logoff(self, req: HttpRequest) -> HttpResponse:
        token = _cookie(req, COOKIE)
        if token is not None:
            self._sessions.pop(token, None)
        gone = f"{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"
        page = self._page(200, pages.logged_off_page(self.site))
        return HttpResponse(page.status, (*page.headers, ("Set-Cookie", gone)), page.body)

    def _expire(self, now: float) -> None:
        """Drop idle sessions; past the cap, the least recently used (the table stays bounded)."""
        for token in [t for t, s in self._sessions.items() if now - s.last > s.idle_s]:
            del self._sessions[token]
        while len(self._sessions) >= MAX_FBA_SESSIONS:
            del self._sessions[min(self._sessions, key=lambda t: self._sessions[t].last)]

    def _canary(self, user: str) -> str:
        return hmac.new(self._secret, user.casefold().encode(), hashlib.sha256).hexdigest()[:32]

    def _challenge(self, as_json: bool) -> HttpResponse:
        realm = ("WWW-Authenticate", f'Basic realm="{self.site.server}"')
        if as_json:
            return _json(
                401, {"error": "log on: HTTP Basic credentials or the logon form's cookie"}, (realm,)
            )
        body = (
            '<p>You are not logged on.</p><p><a id="logon-link" href="'
            f'{LOGON}?url=/exchange/">Log on to Outlook Web Access</a></p>'
        )
        page = self._page(401, pages.layout(self.site, "Logon required", body))
        return HttpResponse(401, (realm, *page.headers), page.body)

    # -- responses ------------------------------------------------------------------------------------
    def _page(self, status: int, text: str, user: str | None = None) -> HttpResponse:
        private = _PRIVATE if user is not None else ()
        return HttpResponse(status, (("Content-Type", _HTML), *_PAGE_HEADERS, *private), text.encode())

    def _error(
        self, status: int, title: str, detail: str, as_json: bool, user: str | None = None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> HttpResponse:  # fmt: skip
        if as_json:
            return _json(status, {"error": detail}, extra)
        page = self._page(status, pages.error_page(self.site, status, title, detail, user), user)
        return HttpResponse(status, (*page.headers, *extra), page.body)

    @staticmethod
    def _only(req: HttpRequest, methods: tuple[str, ...]) -> HttpResponse | None:
        if req.method in methods:
            return None
        return HttpResponse(405, (("Allow", ", ".join(methods)), ("Content-Type", "text/plain")),
                            f"{req.method[:20]} is not allowed here\r\n".encode())  # fmt: skip


_PRIVATE = (("Cache-Control", "no-cache, no-store, private"),)


def build_message(
    site: Site, sender: str, to: Sequence[str], cc: Sequence[str], subject: str, text: str, now: float
) -> bytes:
    """The RFC 5322 message a send form makes (CRLF line ends, as SMTP carries it)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = " ".join(subject.split())  # no CR/LF: a header injection is not a subject
    msg["Date"] = formatdate(now, localtime=False)
    msg["Message-ID"] = make_msgid(domain=site.server)
    msg["X-MimeOLE"] = "Produced By Microsoft Exchange V6.5"
    msg.set_content(text.replace("\r\n", "\n"))
    return msg.as_bytes(policy=SMTP)


def _form(req: HttpRequest) -> dict[str, str]:
    ctype = (req.header("content-type") or "").split(";", 1)[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise _BadRequest("expected a form (application/x-www-form-urlencoded)")
    fields = urllib.parse.parse_qs(
        req.body.decode("latin-1"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, errors="replace"
    )
    return {k: v[0] for k, v in fields.items()}


def _cookie(req: HttpRequest, name: str) -> str | None:
    raw = req.header("cookie")
    if not raw:
        return None
    jar = http.cookies.SimpleCookie()
    try:
        jar.load(raw)
    except http.cookies.CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def _local(url: str | None) -> str:
    """A post-logon destination: a path on this server only (no open redirect)."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url or any(c < " " for c in url):
        return "/exchange/"
    return url


def _quote(user: str) -> str:
    return urllib.parse.quote(user, safe="")


def _redirect(status: int, location: str, extra: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
    return HttpResponse(status, (("Location", location), ("Content-Type", "text/plain"), *extra),
                        f"Moved to {location}\r\n".encode())  # fmt: skip


def _json(status: int, value: object, extra: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
    return HttpResponse(status, (("Content-Type", _JSON), *_PRIVATE, *extra), json.dumps(value).encode())


# == 3. the host hooks ===============================================================================
class OwaSession(HttpSession):
    """An ``HttpSession`` that knows the application serving it (for ``handle``)."""

    def __init__(self, app: OwaApp, **limits: int) -> None:
        super().__init__(**limits)
        self.app = app


class _Refusing:
    """The ``MailAccess`` of a server that has none: every operation is ``Unavailable``, saying why."""

    def __init__(self, why: str) -> None:
        self.why = why

    async def authenticate(self, user: str, password: str) -> bool:
        raise Unavailable(self.why)

    async def list_messages(self, user: str) -> list[MessageSummary]:
        raise Unavailable(self.why)

    async def get_message(self, user: str, uid: int) -> bytes | None:
        raise Unavailable(self.why)

    async def submit(self, sender: str, recipients: Sequence[str], raw: bytes) -> None:
        raise Unavailable(self.why)

    async def mark_seen(self, user: str, uid: int) -> None:
        raise Unavailable(self.why)


def mail_access_for(connection: Connection) -> MailAccess:
    """The listener's ``MailAccess``: ``options.mail_access`` names a ``module:attr`` factory of one.

    Raises ``NoMailAccess`` when none is configured or it cannot be made. The wiring to the store
    process provides that factory.
    """
    path = connection.options.get("mail_access")
    if not isinstance(path, str) or not path:
        raise NoMailAccess(
            f"no mailbox store is wired to the HTTP virtual server of {connection.server} "
            "(spec options.mail_access is not set)"
        )
    try:
        factory = load_object(path)
        access: MailAccess = factory(connection)
    except (SpecError, TypeError, ValueError) as e:
        raise NoMailAccess(f"options.mail_access = {path[:100]!r}: {e}") from None
    return access


def site_of(connection: Connection) -> Site:
    """The site a connection's pages show: ``options.domain`` / ``options.node`` or the server's name."""
    opts = connection.options
    domain = opts.get("domain")
    if not isinstance(domain, str) or not domain:
        domain = connection.server.split(".", 1)[1] if "." in connection.server else connection.server
    node = opts.get("node")
    return Site(connection.server, domain, node if isinstance(node, str) and node else None)


def make_factory(access_for: Callable[[Connection], MailAccess]) -> Callable[[Connection], Session]:
    """A ``SessionFactory``: one ``OwaApp`` (one logon-session table) per listener, made at first use."""
    apps: dict[tuple[str, tuple[str, int]], OwaApp] = {}

    def factory(connection: Connection) -> Session:
        key = (connection.server, connection.local)
        app = apps.get(key)
        if app is None:
            try:
                access = access_for(connection)
            except NoMailAccess as e:
                log.error("%s: every page answers 503", e)
                access = _Refusing(str(e))
            app = apps[key] = OwaApp(site_of(connection), access)
        return OwaSession(app)

    return factory


http_session = make_factory(mail_access_for)  # the PROTOCOLS entry's session factory


async def handle(session: Session, events: Sequence[object]) -> None:
    """The PROTOCOLS entry's event handler: serve each request, in order, pipelined ones included."""
    if not isinstance(session, OwaSession):
        raise TypeError(f"owa.handle serves OwaSession, not {type(session).__name__}")
    pending = list(events)
    while pending:
        request = pending.pop(0)
        if not isinstance(request, HttpRequest):
            continue
        now = time.time()
        try:
            response = await session.app.serve(request, now)
        except Exception:  # an application bug answers 500 and the connection goes on
            log.exception("OWA failed on %s %s", request.method, request.target[:200])
            response = HttpResponse(500, (("Content-Type", "text/plain"),), b"500 Internal Server Error\r\n")
        date = ("Date", formatdate(now, usegmt=True))
        pending += session.respond(response.status, (date, *response.headers), response.body)
