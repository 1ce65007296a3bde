"""Durable jobs, uploaded files and OpenAI batches.

A job is a row in PostgreSQL (``jobs``), the source of truth for its state.
The API commits the row, then sends a task message that names the job and
the attempt it may start (an outbox: ``sent_at`` stays NULL until the send
succeeds, and the sweep sends whatever is left). A worker claims the attempt
with a guarded UPDATE and writes the outcome with another, so a message
delivered twice, or a worker thought dead that finishes after all, changes
nothing.
"""
