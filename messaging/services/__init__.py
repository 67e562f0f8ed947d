"""Blasts: create, send, pause/resume/cancel, sweep and reconcile.

One module per concern, so each rule lives in one place:

- ``creating``: checking a blast's text and audience and writing its recipient rows;
- ``queueing``: handing a blast to a worker, one send task at a time;
- ``lifecycle``: pause, resume, cancel, and finishing a blast once nothing is left;
- ``sending``: the send pass (claims, the opt-out check before each call, outcomes,
  the canary and the automatic pauses);
- ``rate_limit``: the send rate shared by every worker, on the database's clock;
- ``sweeping``: the minute sweeper that puts right what a dead worker or broker left;
- ``reconciling``: settling rows whose outcome is unknown from Twilio's own records;
- ``callbacks``: Twilio's status callbacks, moving a row's status only forward;
- ``inbound``: texts people send us (STOP, START, HELP, JOIN, and replies for the inbox);
- ``composing``: the compose page's pre-flight answers (segments, recipients, preview,
  cost) and the test send;
- ``approval``: an Admin approving or rejecting a blast that waits for it;
- ``retrying``: staff's "Retry failed", for the rows whose failure may pass now.

The rules every function keeps:
- Rows in the database are the truth, never the broker: a task may run twice, late,
  or not at all, and the sweeper puts things right from the rows.
- A delivery leaves 'pending' only through a conditional UPDATE (delivery_claim, or a
  status callback proving Twilio already has its message), so no two workers ever send
  the same row.
- A row whose outcome is unknown is never sent again until Twilio's own message list
  says it did not go out (reconciling), or staff decide; a status callback for its
  message settles it at any time.
"""

from messaging.services.approval import blast_approve, blast_reject
from messaging.services.callbacks import delivery_status_callback
from messaging.services.composing import Audience, blast_preflight, blast_send_test
from messaging.services.creating import BlastError, blast_create, blast_validate
from messaging.services.decisions import delivery_mark_sent, delivery_send_again
from messaging.services.inbound import inbound_receive
from messaging.services.lifecycle import (
    blast_cancel,
    blast_finish_if_done,
    blast_pause,
    blast_resume,
)
from messaging.services.queueing import blast_enqueue
from messaging.services.rate_limit import RateLimiter
from messaging.services.reconciling import deliveries_reconcile, delivery_reconcile
from messaging.services.retrying import RetryResult, blast_retry_failed
from messaging.services.sending import (
    blast_next_step,
    blast_process,
    delivery_claim,
    retry_delay,
)
from messaging.services.sweeping import blasts_sweep, deliveries_expire_stale_claims

__all__ = [
    "Audience",
    "BlastError",
    "RateLimiter",
    "RetryResult",
    "blast_approve",
    "blast_cancel",
    "blast_create",
    "blast_enqueue",
    "blast_finish_if_done",
    "blast_next_step",
    "blast_pause",
    "blast_preflight",
    "blast_reject",
    "blast_retry_failed",
    "blast_process",
    "blast_resume",
    "blast_send_test",
    "blast_validate",
    "blasts_sweep",
    "deliveries_expire_stale_claims",
    "deliveries_reconcile",
    "delivery_claim",
    "delivery_mark_sent",
    "delivery_reconcile",
    "delivery_send_again",
    "delivery_status_callback",
    "inbound_receive",
    "retry_delay",
]
