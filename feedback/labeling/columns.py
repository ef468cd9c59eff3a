"""What a new label stores, declared once: PreferenceLabel's columns as a submit writes them.

The label write (sql.LABEL_WRITE), its parameters in label_steps, the hone_label function's
arguments and the variables bound into its write, and label_call's parameters are built from
LABEL_COLUMNS; label_steps and label_call take exactly the annotator's values it declares.

Changing what a label stores, in order:

1. feedback/models.py: the field on PreferenceLabel, then `manage.py makemigrations feedback`.
2. LABEL_COLUMNS below: the column at the field's position, and where its value comes from:
   - sent by the annotator (ANNOTATOR, with the type hone_label takes it in): also the API's
     input serializer (api/views.py, LabelSubmitInputSerializer; the fast path validates
     with it and passes what it returns on whole), the keyword of feedback.services.label_submit
     and its `fields`, and the labeling page's form (feedback/views.py) if people set it there;
   - known to the write (a name of WRITE_VALUES; a new one added there): its value in
     label_steps' `values` and the label function's variable `v_<name>` (an argument, or an
     entry of LABEL_RETURNED in functions.py), read by the lease submit (sql.LEASE_SUBMIT, and
     the INTO list after it in the label function) when it comes from the lease or its project;
   - the same in every new label: its SQL, here.
3. feedback.services.label_submit: the PreferenceLabel.from_db(...) list, the label it returns,
   in the model's field order.
4. Only if a caller needs it back from the label function: LABEL_RETURNED (functions.py) and the
   Submitted field of the same name (steps.py).
5. Only if a review or an edit can change it: label_state (steps.py), the audit trail's record.
6. `manage.py migrate` (it reinstalls the functions), then tests/feedback/test_labeling_columns.py,
   which fails while the model, this declaration, the API's input, the installed hone_label
   function (arguments, their types against the table's, what it returns and submitted_of reads)
   and the label that label_submit returns are out of step (a new annotator's value also goes
   into the values its tests submit); tests/api/test_fastpath.py runs both paths.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# A value the annotator sends with the label.
ANNOTATOR = "annotator"
# The values a label write has besides the annotator's: the lease's comparison and how it was
# shown, the caller, the lease, the time.
WRITE_VALUES = ("comparison_id", "user_id", "assignment_id", "a_shown_left", "is_repeat", "now")


class LabelColumn(NamedTuple):
    name: str  # the PreferenceLabel field's column (attname)
    value: str  # ANNOTATOR, a name of WRITE_VALUES (both bound as parameters), or SQL
    pg_type: str = ""  # ANNOTATOR: the type of hone_label's argument

    @property
    def param(self) -> str:
        """The name of the value bound here; "" for SQL written into the statement."""
        if self.value == ANNOTATOR:
            return self.name
        return self.value if self.value in WRITE_VALUES else ""


# PreferenceLabel's columns after id, in the model's field order.
LABEL_COLUMNS = (
    LabelColumn("comparison_id", "comparison_id"),
    LabelColumn("annotator_id", "user_id"),
    LabelColumn("assignment_id", "assignment_id"),
    LabelColumn("choice", ANNOTATOR, "varchar"),
    LabelColumn("strength", ANNOTATOR, "integer"),
    LabelColumn("rationale", ANNOTATOR, "text"),
    LabelColumn("time_spent_ms", ANNOTATOR, "integer"),
    LabelColumn("a_shown_left", "a_shown_left"),
    LabelColumn("is_repeat", "is_repeat"),
    LabelColumn("review_status", "{unreviewed}"),
    LabelColumn("withdrawn_at", "NULL"),
    LabelColumn("created_at", "now"),
    LabelColumn("updated_at", "now"),
)

# What the annotator sends: the keywords of label_steps and label_call, hone_label's arguments.
LABEL_INPUT = tuple(column for column in LABEL_COLUMNS if column.value == ANNOTATOR)
# The label write's parameters, in order, by name.
LABEL_PARAMS = tuple(column.param for column in LABEL_COLUMNS if column.param)


def annotator_values(given: dict[str, Any]) -> dict[str, Any]:
    """`given`, checked to hold the annotator's values (LABEL_INPUT), no more, no fewer."""
    names = [column.name for column in LABEL_INPUT]
    if set(given) != set(names):
        raise TypeError(f"a label takes the annotator's {names}, not {sorted(given)}")
    return given
