"""The extension points of the feedback app: what it tells the layers above it.

feedback (projects, prompts, comparisons, labels, the annotator's pages) never imports
training (the loop). Where something that happens here matters to the loop, feedback sends
one of these signals and training subscribes to it (training/receivers.py, connected in
TrainingConfig.ready()). See docs/architecture.md.
"""

from django.dispatch import Signal

# A project was created. Sent inside the transaction that creates it, so that a receiver's
# rows (training: the version 0 policy) are written with it or not at all.
# Arguments: project.
project_created = Signal()

# A regular label (not a consistency repeat) was stored, after its transaction committed.
# Sent by both labeling paths (feedback.services.label_submit and the fast path in api/).
# Arguments: project_id, trigger_new_labels (the project's label trigger is set),
# human_gate (an iteration of the project waits for human labels).
label_stored = Signal()

# The annotator's queue is empty, and their page says what the loop is waiting for. Sent with
# project; a receiver answers a phrase ("The loop is waiting for <phrase>.") or None.
loop_waiting_asked = Signal()
