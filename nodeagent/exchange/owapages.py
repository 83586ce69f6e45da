"""Outlook Web Access pages: how a message is shown, and the HTML of every page. Pure functions.

Theory of operation
-------------------
owa.py decides *what* to answer (routing, authentication, the mailbox access); this module says
*how it looks*. Two parts:

- the view of a message: ``summarize`` (the inbox line of a raw RFC 5322 message) and
  ``view_message`` (its headers and text body, for the read page and the JSON view), both with the
  standard library's ``email`` package. Mail is hostile input: a header that does not parse, an
  unknown charset or a broken MIME structure degrades to what can be shown (raw header text, the
  payload decoded as UTF-8 with replacement), never to an exception;
- the pages (``login_page``, ``inbox_page``, ``message_page``, ``compose_page``, ...): strings built
  from ``Site`` (the virtual server's name, the node that serves it) and the view models. Every
  value that came from a user, a message or a URL goes through ``html.escape`` exactly once, in
  ``_e``; nothing else is interpolated. No JavaScript: the pages work in any browser, and the
  Content-Security-Policy owa.py sends can forbid scripts entirely.

Only the text/plain part of a message is shown (an HTML-only message says so and is not rendered:
rendering hostile HTML safely is a sanitizer's job, not a lab's). Attachments are listed by name.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import html
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage, Message

MAX_SHOWN_HEADER = 998  # RFC 5322's line limit: longer header values are cut for display


@dataclass(frozen=True, slots=True)
class Site:
    """What every page shows about where it came from."""

    server: str  # the virtual server's name, EVS1.wolfpack.lab
    domain: str  # the mail domain, wolfpack.lab (From addresses: user@domain)
    node: str | None = None  # the cluster node serving it now (the footer shows a failover)

    @property
    def short(self) -> str:
        return self.server.split(".", 1)[0]

    @property
    def title(self) -> str:
        return f"Microsoft Outlook Web Access - {self.short}"


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """One line of the inbox."""

    uid: int
    sender: str  # the From header as text
    subject: str
    date: str  # the Date header as text ("" if none)
    size: int  # octets of the raw message
    seen: bool


@dataclass(frozen=True, slots=True)
class MessageView:
    """A message as the read page and the JSON view show it."""

    uid: int
    sender: str
    to: str
    cc: str
    date: str
    subject: str
    body: str  # the text/plain part, decoded
    attachments: tuple[str, ...]  # file names (or content types when unnamed)
    note: str  # why no body is shown, if none is ("" otherwise)


# -- the view of a message --------------------------------------------------------------------------
def _parse(raw: bytes) -> Message:
    # policy.default gives EmailMessage (get_body, iter_attachments); parsing itself never raises on
    # bad input (defects are recorded), but reading a header or a part later may.
    return email.message_from_bytes(raw, policy=email.policy.default)


def _header(msg: Message, name: str) -> str:
    try:
        value = msg.get(name)
        text = "" if value is None else str(value)
    except Exception:  # a header the registry cannot parse: show its raw text
        raws = [v for k, v in msg.raw_items() if k.lower() == name.lower()]
        text = str(raws[0]) if raws else ""
    return " ".join(text.split())[:MAX_SHOWN_HEADER]


def _text_of(part: Message) -> str:
    try:
        if isinstance(part, EmailMessage):
            content = part.get_content()
            if isinstance(content, str):
                return content
    except Exception:  # unknown charset, bad transfer encoding: fall through to the lenient way
        pass
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode("utf-8", errors="replace")
    return str(part.get_payload())


def summarize(uid: int, raw: bytes, seen: bool) -> MessageSummary:
    """The inbox line of a raw message (for a ``MailAccess`` that holds raw messages)."""
    msg = _parse(raw)
    return MessageSummary(
        uid, _header(msg, "From"), _header(msg, "Subject"), _header(msg, "Date"), len(raw), seen
    )


def view_message(uid: int, raw: bytes) -> MessageView:
    msg = _parse(raw)
    body, note = "", ""
    attachments: list[str] = []
    try:
        part = msg.get_body(preferencelist=("plain",)) if isinstance(msg, EmailMessage) else None
        if part is not None:
            body = _text_of(part)
        elif msg.get_content_maintype() == "text" and msg.get_content_subtype() != "plain":
            note = f"This message has only a {msg.get_content_type()} part, which is not shown here."
        elif not msg.is_multipart():
            body = _text_of(msg)
        else:
            note = "This message has no text part."
        if isinstance(msg, EmailMessage):
            for att in msg.iter_attachments():
                attachments.append(att.get_filename() or att.get_content_type())
    except Exception:  # a MIME structure the package chokes on: show the raw text of the message
        body, note = raw.decode("utf-8", errors="replace"), "This message could not be decoded; shown raw."
    return MessageView(
        uid, _header(msg, "From"), _header(msg, "To"), _header(msg, "Cc"), _header(msg, "Date"),
        _header(msg, "Subject"), body, tuple(attachments), note,
    )  # fmt: skip


# -- HTML ---------------------------------------------------------------------------------------------
def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _size(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{(n + 1023) // 1024} KB"


def layout(site: Site, heading: str, body: str, user: str | None = None) -> str:
    """The frame of every page: title bar, the page, the footer naming the server and node."""
    who = ""
    if user is not None:
        who = (
            f'<span class="who">{_e(user)}@{_e(site.domain)}</span>'
            f'<a id="logoff" href="/exchweb/bin/auth/owalogoff.asp">Log Off</a>'
        )
    node = f' &middot; served by <b id="node">{_e(site.node)}</b>' if site.node else ""
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{_e(site.title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="stylesheet" href="/exchweb/owa.css"></head>\n<body>'
        f'<header class="bar"><span class="logo">Outlook Web Access</span>'
        f'<span class="srv">{_e(site.server)}</span>{who}</header>\n'
        f"<main><h1>{_e(heading)}</h1>\n{body}</main>\n"
        f"<footer>Microsoft Exchange Server 2003 &middot; {_e(site.server)}{node}"
        " &middot; wolfpack lab</footer>"
        "</body></html>\n"
    )


def login_page(site: Site, destination: str, error: str = "") -> str:
    err = f'<p class="error" id="error">{_e(error)}</p>' if error else ""
    body = f"""{err}<form class="card" method="post" action="/exchweb/bin/auth/owaauth.dll">
<input type="hidden" name="destination" value="{_e(destination)}">
<label for="username">Domain\\user name:</label>
<input id="username" name="username" autocomplete="username" autofocus>
<label for="password">Password:</label>
<input id="password" name="password" type="password" autocomplete="current-password">
<fieldset><legend>Security</legend>
<label><input type="radio" name="flags" value="0" checked> Public or shared computer</label>
<label><input type="radio" name="flags" value="4"> Private computer</label></fieldset>
<button id="logon" type="submit">Log On</button></form>
<p class="hint">Forms-based authentication over plain HTTP:
the product requires SSL for it; this lab does not.</p>"""
    return layout(site, f"Log on to {site.short}", body)


def logged_off_page(site: Site) -> str:
    body = '<p>You have logged off Outlook Web Access.</p><p><a href="/exchange/">Log on again</a></p>'
    return layout(site, "Logged off", body)


def inbox_page(site: Site, user: str, messages: Sequence[MessageSummary], notice: str = "") -> str:
    rows = []
    for m in messages:
        cls = "" if m.seen else ' class="unread"'
        href = f"/exchange/{_e(user)}/{m.uid}"
        subject = m.subject or "(no subject)"
        rows.append(
            f'<tr{cls} data-uid="{m.uid}"><td>{_e(m.sender)}</td>'
            f'<td><a href="{href}">{_e(subject)}</a></td><td>{_e(m.date)}</td>'
            f'<td class="num">{_size(m.size)}</td></tr>'
        )
    table = (
        '<table id="messages"><thead><tr><th>From</th><th>Subject</th><th>Received</th>'
        f'<th class="num">Size</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
        if rows else '<p id="empty">There are no items to show in this view.</p>'
    )  # fmt: skip
    note = f'<p class="notice" id="notice">{_e(notice)}</p>' if notice else ""
    tools = (
        f'<nav class="tools"><a id="new" href="/exchange/{_e(user)}/new">New message</a>'
        f'<a id="refresh" href="/exchange/{_e(user)}/">Check for new messages</a>'
        f'<a href="/exchange/{_e(user)}/?format=json">JSON</a></nav>'
    )
    return layout(site, f"Inbox ({len(messages)})", f"{note}{tools}{table}", user)


def message_page(site: Site, user: str, view: MessageView) -> str:
    def line(label: str, value: str, ident: str) -> str:
        return f'<tr><th>{label}:</th><td id="{ident}">{_e(value)}</td></tr>' if value else ""

    heads = "".join([
        line("From", view.sender, "msg-from"), line("To", view.to, "msg-to"), line("Cc", view.cc, "msg-cc"),
        line("Sent", view.date, "msg-date"), line("Subject", view.subject or "(no subject)", "msg-subject"),
        line("Attachments", ", ".join(view.attachments), "msg-attachments"),
    ])  # fmt: skip
    note = f'<p class="notice">{_e(view.note)}</p>' if view.note else ""
    base = f"/exchange/{_e(user)}"
    body = (
        f'<nav class="tools"><a id="inbox" href="{base}/">Inbox</a>'
        f'<a href="{base}/new">New message</a><a href="{base}/{view.uid}?format=raw">Message source</a></nav>'
        f'<table class="heads">{heads}</table>{note}<pre id="msg-body">{_e(view.body)}</pre>'
    )
    return layout(site, view.subject or "(no subject)", body, user)


def compose_page(
    site: Site,
    user: str,
    canary: str,
    *,
    to: str = "",
    cc: str = "",
    subject: str = "",
    text: str = "",
    error: str = "",
) -> str:
    err = f'<p class="error" id="error">{_e(error)}</p>' if error else ""
    body = f"""{err}<form class="card compose" method="post" action="/exchange/{_e(user)}/new">
<input type="hidden" name="canary" value="{_e(canary)}">
<label>From:</label><span>{_e(user)}@{_e(site.domain)}</span>
<label for="to">To:</label><input id="to" name="to" value="{_e(to)}" autofocus>
<label for="cc">Cc:</label><input id="cc" name="cc" value="{_e(cc)}">
<label for="subject">Subject:</label><input id="subject" name="subject" value="{_e(subject)}">
<textarea id="body" name="body" rows="14">{_e(text)}</textarea>
<div><button id="send" type="submit">Send</button> <a href="/exchange/{_e(user)}/">Cancel</a></div></form>"""
    return layout(site, "New message", body, user)


def public_page(site: Site) -> str:
    body = (
        "<p>The public folder store of this virtual server exists (Public Folders, "
        f"<code>pub1.edb</code> on the {_e(site.short)} disk), but public folders are not browsable in "
        'this lab.</p><p><a href="/exchange/">Go to your mailbox</a></p>'
    )
    return layout(site, "Public Folders", body)


def error_page(site: Site, status: int, title: str, detail: str, user: str | None = None) -> str:
    body = (
        f'<p class="error" id="error">HTTP {status}: {_e(detail)}</p>'
        '<p><a href="/exchange/">Outlook Web Access</a></p>'
    )
    return layout(site, title, body, user)


# Outlook 2003's blues, no images, no scripts.
CSS = """\
* { box-sizing: border-box; }
body { margin: 0; font: 13px/1.45 Tahoma, Verdana, "DejaVu Sans", sans-serif; color: #1b1b1b;
       background: #e9eef7; min-height: 100vh; display: flex; flex-direction: column; }
.bar { display: flex; gap: 16px; align-items: baseline; padding: 10px 18px; color: #fff;
       background: linear-gradient(#5b8fd6, #2d5ba8); border-bottom: 2px solid #f2b33d; }
.bar .logo { font-size: 18px; font-weight: bold; letter-spacing: .5px; }
.bar .srv { opacity: .85; }
.bar .who { margin-left: auto; }
.bar a { color: #fff; }
main { flex: 1; padding: 14px 22px; }
h1 { font-size: 17px; color: #15428b; margin: 4px 0 12px; }
.tools { display: flex; gap: 14px; margin-bottom: 10px; }
.tools a, button { background: #fff; border: 1px solid #7f9db9; border-radius: 3px; padding: 4px 10px;
       color: #15428b; text-decoration: none; font: inherit; cursor: pointer; }
button { background: linear-gradient(#fff, #dbe6f7); }
table#messages { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid #a5bfe1; }
#messages th { text-align: left; background: #dbe6f7; color: #15428b; padding: 4px 8px;
       border-bottom: 1px solid #a5bfe1; }
#messages td { padding: 4px 8px; border-bottom: 1px solid #eef2f8; }
#messages tr:hover td { background: #f4f8fd; }
#messages .unread td { font-weight: bold; }
#messages a { color: inherit; }
.num { text-align: right; white-space: nowrap; }
table.heads { background: #fff; border: 1px solid #a5bfe1; padding: 6px 10px; width: 100%; }
table.heads th { text-align: right; width: 7em; color: #4a607f; vertical-align: top; }
pre#msg-body { background: #fff; border: 1px solid #a5bfe1; padding: 12px; white-space: pre-wrap;
       font: 13px/1.5 "DejaVu Sans Mono", monospace; }
.card { display: grid; grid-template-columns: max-content 1fr; gap: 8px 10px; max-width: 640px;
       background: #fff; border: 1px solid #a5bfe1; padding: 16px; }
.card fieldset, .card button, .card textarea, .card div { grid-column: 1 / -1; }
.card fieldset label { display: block; }
.card input, .card textarea { font: inherit; padding: 3px 5px; border: 1px solid #7f9db9; }
.compose { max-width: 820px; }
.error { color: #a00; font-weight: bold; }
.notice { color: #15428b; background: #fff8d8; border: 1px solid #f2d36b; padding: 5px 9px; }
.hint { color: #66768f; font-size: 11px; }
footer { padding: 8px 18px; color: #4a607f; font-size: 11px; border-top: 1px solid #a5bfe1;
         background: #dbe6f7; }
"""
