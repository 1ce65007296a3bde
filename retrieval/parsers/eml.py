"""E-mail (.eml, MIME) through the standard library's ``email`` package.

The subject is the title and the first heading; the From, To, Cc and Date
lines follow, then the body: the text/plain part, or the text/html part
through the HTML parser when there is no plain one. Attachments are named
but not parsed: to search them, upload them as documents of their own.
"""

from __future__ import annotations

from email import policy
from email.message import Message, MIMEPart
from email.parser import BytesParser

from retrieval.parsed import Block, ParsedDocument
from retrieval.parsers import html, text
from server.errors import UnparseableDocument

_HEADERS = ("From", "To", "Cc", "Date")


def _content(part: MIMEPart, filename: str) -> str:
    try:
        return part.get_content()
    except (LookupError, ValueError):
        # An unknown or wrong charset: guess from the bytes instead.
        payload = part.get_payload(decode=True)
        return text.decode(payload if isinstance(payload, bytes) else b"", filename)


def _body(part: MIMEPart | None, filename: str) -> list[Block]:
    if part is None:
        return []
    content = _content(part, filename)
    if part.get_content_subtype() == "html":
        return html.parse(content, filename).blocks
    return text.parse(content.encode(), filename).blocks


def _attachment_name(part: Message) -> str | None:
    if not isinstance(part, MIMEPart):  # policy.default makes every part one
        return None
    if part.get_content_type() == "message/rfc822":
        subject = part.get_content()["Subject"] or "(no subject)"
        return f"e-mail {str(subject)!r}"
    if part.get_filename() or part.is_attachment():
        return part.get_filename() or f"unnamed {part.get_content_type()}"
    return None


def _attachments(message: MIMEPart, body: MIMEPart | None) -> Block | None:
    parts = (part for part in message.walk() if part is not body)
    names = [name for name in map(_attachment_name, parts) if name]
    if not names:
        return None
    return Block(text="Attachments: " + ", ".join(names), kind="list")


def parse(data: bytes, filename: str) -> ParsedDocument:
    try:
        message = BytesParser(policy=policy.default).parsebytes(data)
        subject = text.clean(" ".join(str(message["Subject"] or "").split()))
        lines = [f"{name}: {message[name]}" for name in _HEADERS if message[name]]
        part = message.get_body(preferencelist=("plain", "html"))
        body = _body(part, filename)
        attachments = _attachments(message, part)
    except UnparseableDocument:
        raise
    except Exception as exc:  # malformed MIME raises from deep in email
        raise UnparseableDocument(
            f"{filename!r} could not be read as an e-mail ({type(exc).__name__}); "
            "save it again from your mail program as .eml and upload it."
        ) from exc

    blocks = []
    if subject:
        blocks.append(Block(text=subject, kind="heading", level=1))
    if lines:
        blocks.append(Block(text=text.clean("\n".join(lines))))
    blocks.extend(body)
    if attachments is not None:
        blocks.append(attachments)
    return ParsedDocument(format="eml", blocks=blocks, title=subject or None)
