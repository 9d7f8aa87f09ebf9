"""Schemathesis hooks for Inlet: sign generated webhook bodies, and leave out
what no schema can generate validly (an issued cursor or feed position),
and bound the feed's long-polls.

Loaded with SCHEMATHESIS_HOOKS=hooks (this directory on PYTHONPATH); the
secret comes from WEBHOOK_SECRET, the same one the server under test has.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import time

import schemathesis
from schemathesis.generation import GenerationMode

SECRET = os.environ["WEBHOOK_SECRET"].encode()
VERIFY_TOKEN = os.environ["WHATSAPP_VERIFY_TOKEN"]
# What the document calls well formed (the patterns of /openapi.json): a
# value it calls malformed is kept, so a request meant to be rejected still is.
X_SIGNATURE = re.compile(r"(sha256=)?[0-9a-fA-F]{64}")
HUB_SIGNATURE = re.compile(r"sha256=[0-9a-fA-F]{64}")
TIMESTAMP = re.compile(r"[0-9]{1,18}")
NON_EMPTY = re.compile(r".+", re.DOTALL)
POSITION = re.compile(r"[A-Za-z0-9_-]{21}[AQgw]")


@schemathesis.hook
def before_call(ctx, case, kwargs):
    if case.operation.path == "/webhook/whatsapp" and case.method.upper() == "GET":
        if is_positive(case):
            handshake(case)
    elif case.operation.path in ("/webhook", "/webhook/whatsapp"):
        sign(case, kwargs)
    elif case.operation.path == "/messages" and is_positive(case) and case.query:
        # A cursor is valid only as the server issued it, for the same
        # filters; a generated string of the documented shape is rightly
        # refused with 422.
        case.query.pop("cursor", None)
    elif case.operation.path == "/feed" and case.query:
        # Likewise a position: valid only as this database issued it. A
        # well-formed one is left out whatever the case's mode (a case can be
        # negative elsewhere and still schema-valid); a malformed one stays.
        if isinstance(case.query.get("after"), str) and POSITION.fullmatch(case.query["after"]):
            case.query.pop("after")
        # Every generated long-poll would otherwise wait up to 25 s on a
        # feed with nothing new; one second shows the same behaviour.
        if isinstance(case.query.get("wait"), int) and case.query["wait"] > 1:
            case.query["wait"] = 1


def handshake(case):
    """Meta's handshake as Meta sends it: the configured token and a challenge."""
    query = dict(case.query or {}, **{"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN})
    query.setdefault("hub.challenge", "challenge-0")
    case.query = query


def sign(case, kwargs):
    """Sends the body as these exact bytes and signs it in the scheme the
    server will pick (the strongest present), unless a generated signature
    header is malformed."""
    if not case.media_type or "json" not in case.media_type or case.body is None or case.headers is None:
        return
    try:
        body = json.dumps(case.body).encode()
    except (TypeError, ValueError):
        return
    kwargs["data"] = body
    headers = case.headers
    if not well_formed(headers):
        return
    if "webhook-signature" in headers:
        if headers.get("webhook-id") and "webhook-timestamp" in headers:
            message_id = headers["webhook-id"]
            timestamp = str(int(time.time()))
            signed = f"{message_id}.{timestamp}.".encode() + body
            digest = hmac.new(SECRET, signed, hashlib.sha256).digest()
            headers["webhook-timestamp"] = timestamp
            headers["webhook-signature"] = "v1," + base64.b64encode(digest).decode()
    elif "x-hub-signature-256" in headers:
        headers["x-hub-signature-256"] = "sha256=" + hex_hmac(body)
    elif "x-signature" in headers:
        headers["x-signature"] = hex_hmac(body)


def well_formed(headers):
    """Whether every signature header present matches its documented shape."""
    shapes = {
        "x-signature": X_SIGNATURE,
        "x-hub-signature-256": HUB_SIGNATURE,
        "webhook-timestamp": TIMESTAMP,
        "webhook-id": NON_EMPTY,
        "webhook-signature": NON_EMPTY,
    }
    return all(shape.fullmatch(str(headers[name])) for name, shape in shapes.items() if name in headers)


def hex_hmac(body):
    return hmac.new(SECRET, body, hashlib.sha256).hexdigest()


def is_positive(case):
    meta = getattr(case, "meta", None)
    return meta is not None and meta.generation.mode == GenerationMode.POSITIVE
