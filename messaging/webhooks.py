"""Twilio's webhooks: message status callbacks and inbound messages.

Both are POSTed by Twilio and signed: ``X-Twilio-Signature`` is an HMAC, keyed with
our Auth Token, of the URL Twilio requested and the posted fields. The URL is rebuilt
the way Twilio saw it: ``PUBLIC_BASE_URL`` plus the path and query when it is set
(what the engine gives Twilio as StatusCallback), otherwise the scheme and host the
trusted proxy forwarded (``X-Forwarded-Proto``/``X-Forwarded-Host``, only with
``TRUSTED_PROXY_COUNT``), otherwise the request's own. A request without a valid
signature gets 403 and changes nothing; so does any request while
``TWILIO_AUTH_TOKEN`` is empty (anyone could sign with an empty key).

These two views are the only ones that skip CSRF: Twilio has no CSRF token, and the
signature is what proves the sender.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from messaging.services.callbacks import (
    CallbackError,
    delivery_status_callback,
    parse_status_callback,
)
from messaging.services.inbound import inbound_receive

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "HTTP_X_TWILIO_SIGNATURE"
_MAX_MEDIA = 10


def _first(value: str) -> str:
    return value.split(",", 1)[0].strip()


def signed_url(request: HttpRequest) -> str:
    """The URL Twilio requested, as it computed the signature over it."""
    query = request.META.get("QUERY_STRING", "")
    query = f"?{query}" if query else ""
    if settings.PUBLIC_BASE_URL:
        return f"{settings.PUBLIC_BASE_URL}{request.path_info}{query}"
    if settings.TRUSTED_PROXY_COUNT:
        proto = _first(request.META.get("HTTP_X_FORWARDED_PROTO", "")).lower()
        host = request.META.get("HTTP_X_FORWARDED_HOST", "")
        # The proxy sets or appends it; its own entry is the last one.
        host = host.rsplit(",", 1)[-1].strip() if host else request.get_host()
        scheme = proto if proto in ("http", "https") else request.scheme
        return f"{scheme}://{host}{request.path}{query}"
    return f"{request.scheme}://{request.get_host()}{request.path}{query}"


def _verified(request: HttpRequest) -> bool:
    token = settings.TWILIO_AUTH_TOKEN
    if not token:
        logger.error(
            "Twilio webhook refused: TWILIO_AUTH_TOKEN is not set, nothing can be verified"
        )
        return False
    signature = request.META.get(SIGNATURE_HEADER, "")
    if not signature:
        logger.warning("Twilio webhook refused: no X-Twilio-Signature (%s)", request.path)
        return False
    url = signed_url(request)
    if RequestValidator(token).validate(url, request.POST, signature):
        return True
    logger.warning(
        "Twilio webhook refused: the signature does not match %s (check PUBLIC_BASE_URL and "
        "the proxy's X-Forwarded-Proto/Host)",
        url,
    )
    return False


def _forbidden() -> HttpResponse:
    return HttpResponseForbidden(
        "Invalid or missing X-Twilio-Signature.", content_type="text/plain"
    )


def _bad_request(text: str) -> HttpResponse:
    return HttpResponseBadRequest(text, content_type="text/plain")


@csrf_exempt
@never_cache
@require_POST
def twilio_status(request: HttpRequest) -> HttpResponse:
    """One status change of one message we sent."""
    if not _verified(request):
        return _forbidden()
    try:
        callback = parse_status_callback(request.POST, request.GET)
    except CallbackError as exc:
        logger.warning("Status callback refused: %s", exc)
        return _bad_request(str(exc))
    delivery_status_callback(callback)
    return HttpResponse(b"", content_type="text/plain")


_INBOUND_FIELDS = ("MessageSid", "SmsSid", "From", "To", "Body", "OptOutType", "NumMedia")


def _text(value: str | None) -> str:
    # PostgreSQL cannot store NUL in text, and a STOP followed by one is still a STOP.
    return (value or "").replace("\x00", "")


def _twiml(reply: str) -> HttpResponse:
    response = MessagingResponse()
    if reply:
        response.message(reply)
    return HttpResponse(response.to_xml(xml_declaration=True), content_type="text/xml")


@csrf_exempt
@never_cache
@require_POST
def twilio_inbound(request: HttpRequest) -> HttpResponse:
    """A text someone sent to our number; answered with TwiML (empty: no answer)."""
    if not _verified(request):
        return _forbidden()
    data = {key: _text(request.POST.get(key)) for key in _INBOUND_FIELDS}
    data |= {f"MediaUrl{i}": _text(request.POST.get(f"MediaUrl{i}")) for i in range(_MAX_MEDIA)}
    sid = (data["MessageSid"] or data["SmsSid"]).strip()
    sender = data["From"].strip()
    if not sid or len(sid) > 64 or not sid.isalnum():
        return _bad_request("MessageSid is missing or not a message SID.")
    if not sender:
        return _bad_request("From is missing.")
    raw_media = (data["NumMedia"] or "0").strip()
    # isascii: "²".isdigit() is true, and int() refuses it.
    ok = raw_media.isascii() and raw_media.isdigit() and len(raw_media) < 5
    num_media = int(raw_media) if ok else 0
    media = [
        url for i in range(min(num_media, _MAX_MEDIA)) if (url := data.get(f"MediaUrl{i}", ""))
    ]
    result = inbound_receive(
        message_sid=sid,
        from_=sender,
        to=data["To"],
        body=data["Body"],
        opt_out_type=data["OptOutType"],
        num_media=num_media,
        media_urls=media,
    )
    return _twiml(result.reply)
