"""The managers' pages outside the admin's model lists: compose and the blast page.

- ``compose``: writing a blast, its pre-flight panel, a test send, the confirm step;
- ``approval``: an Admin approving or rejecting a blast that waits for it;
- ``blast``: one blast's page, its live progress, its controls and its recipients.

Views only read forms and call services (``messaging.services``); no sending logic
lives here. Every page extends the admin's base template (``access.admin_context``).
"""
