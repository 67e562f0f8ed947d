"""Compose: write a blast, see what it will cost and who gets it, test it, confirm it."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from messaging.views.access import send_blast_required


@send_blast_required
def compose(request: HttpRequest) -> HttpResponse:
    raise NotImplementedError


@send_blast_required
def preflight(request: HttpRequest) -> HttpResponse:
    raise NotImplementedError


@send_blast_required
def send_test(request: HttpRequest) -> HttpResponse:
    raise NotImplementedError


@send_blast_required
def confirm(request: HttpRequest) -> HttpResponse:
    raise NotImplementedError
