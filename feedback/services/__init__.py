"""Every write of the feedback app, one module per topic:

- `projects`: projects, memberships (and what ends with them), prompts;
- `comparisons`: comparisons made of two completions of a prompt;
- `labels`: leases and labels (both labeling paths run the statements of feedback/labeling);
- `workspace`: what an annotator does besides labeling (undo, skip, flag);
- `review`: reviewers' and admins' decisions on labels and comparisons;
- `demonstrations`: answers people write or edit, and their review;
- `audit`: the audit log of changes to the loop and to who may act;
- `accounts`: API tokens, and erasing a person on a data-protection request.

Callers import the package (`from feedback import services`); the names below are the public
interface.
"""

from feedback.services.accounts import (
    Erasure,
    annotator_erase,
    api_token_create,
    api_token_delete,
)
from feedback.services.audit import audit_record
from feedback.services.comparisons import (
    comparisons_create,
    comparisons_prioritize,
    storable_text,
)
from feedback.services.demonstrations import (
    demonstration_correct,
    demonstration_edit,
    demonstration_review,
    demonstration_state,
    demonstration_text_clean,
    demonstration_write,
)
from feedback.services.labels import (
    MAX_TIME_SPENT_MS,
    REPEAT_GAP,
    assignment_lease,
    assignment_next,
    label_audit_state,
    label_stored_announce,
    label_submit,
    user_leases_close,
    vote_check,
)
from feedback.services.projects import (
    membership_remove,
    membership_set,
    project_create,
    project_gates_set,
    project_pseudonym_key_rotate,
    project_settings_set,
    project_training_set,
    prompts_import,
    user_access_end,
)
from feedback.services.review import comparison_decide, comparison_set_gold, label_review
from feedback.services.workspace import (
    SKIP_REASONS,
    UNDO_WINDOW,
    assignment_skip,
    comparison_flag,
    label_undo,
)

__all__ = [
    "Erasure",
    "MAX_TIME_SPENT_MS",
    "REPEAT_GAP",
    "SKIP_REASONS",
    "UNDO_WINDOW",
    "annotator_erase",
    "api_token_create",
    "api_token_delete",
    "assignment_lease",
    "assignment_next",
    "assignment_skip",
    "audit_record",
    "comparison_decide",
    "comparison_flag",
    "comparison_set_gold",
    "comparisons_create",
    "comparisons_prioritize",
    "demonstration_correct",
    "demonstration_edit",
    "demonstration_review",
    "demonstration_state",
    "demonstration_text_clean",
    "demonstration_write",
    "label_audit_state",
    "label_review",
    "label_stored_announce",
    "label_submit",
    "label_undo",
    "membership_remove",
    "membership_set",
    "project_create",
    "project_gates_set",
    "project_training_set",
    "project_pseudonym_key_rotate",
    "project_settings_set",
    "prompts_import",
    "storable_text",
    "user_access_end",
    "user_leases_close",
    "vote_check",
]
