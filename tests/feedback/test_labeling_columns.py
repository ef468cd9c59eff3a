"""What a label stores is declared once (feedback/labeling/columns.py). These tests fail while a
place that writes, passes or reads a label's columns is out of step with that declaration: the
model, the API's input, the installed hone_label function (PostgreSQL, after migrate), the row
submitted_of reads, and the label that label_submit builds without reading it back."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.utils import timezone

from api.views import LabelSubmitApi
from feedback.labeling import (
    LEASE_COLUMNS,
    Submitted,
    columns,
    functions,
    label_call,
    submitted_of,
)
from feedback.models import Assignment, PreferenceLabel
from feedback.services import assignment_next, label_submit
from tests.factories import make_comparisons

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the labeling functions: PostgreSQL"
)


def test_the_declaration_lists_the_models_columns_in_the_models_order():
    label_fields = [field.attname for field in PreferenceLabel._meta.concrete_fields]
    assert ["id", *(column.name for column in columns.LABEL_COLUMNS)] == label_fields
    lease_fields = [field.attname for field in Assignment._meta.concrete_fields]
    assert list(LEASE_COLUMNS) == lease_fields


def test_the_api_takes_the_annotators_values_the_declaration_lists():
    declared = {column.name for column in columns.LABEL_INPUT}
    assert set(LabelSubmitApi.InputSerializer().fields) == declared


def test_a_call_without_one_of_the_annotators_values_is_refused():
    given = {"choice": "a", "strength": 2, "rationale": ""}  # no time_spent_ms
    with pytest.raises(TypeError, match="time_spent_ms"):
        label_call(user_id=1, assignment_id=1, now=timezone.now(), **given)


@pytest.mark.django_db
def test_the_label_label_submit_returns_is_the_label_stored(project, annotator):
    make_comparisons(project, [("first answer", "second answer")])
    lease = assignment_next(project=project, user=annotator)

    returned = label_submit(
        user=annotator,
        assignment_id=lease.pk,
        choice="both_bad",
        strength=3,
        rationale="  both wrong  ",
        time_spent_ms=1234,
    )

    stored = PreferenceLabel.objects.get()
    names = [field.attname for field in PreferenceLabel._meta.concrete_fields]
    assert {name: getattr(returned, name) for name in names} == {
        name: getattr(stored, name) for name in names
    }
    assert (stored.assignment_id, stored.choice, stored.strength) == (lease.pk, "both_bad", 3)
    assert (stored.rationale, stored.time_spent_ms) == ("both wrong", 1234)
    assert (stored.a_shown_left, stored.review_status) == (lease.a_shown_left, "unreviewed")


def _function_arguments(cursor, name: str) -> list[tuple[str, str, str]]:
    """(name, mode, type) of the installed function's arguments, in order; mode "i" for an
    argument, "t" for a column of what it returns."""
    cursor.execute(
        """
        SELECT a.name, a.mode, format_type(a.type, NULL)
          FROM pg_proc p,
               unnest(p.proargnames, p.proargmodes, p.proallargtypes)
                   WITH ORDINALITY AS a(name, mode, type, position)
         WHERE p.proname = %s
         ORDER BY a.position
        """,
        [name],
    )
    return cursor.fetchall()


def _type_name(cursor, pg_type: str) -> str:
    cursor.execute("SELECT %s::regtype::text", [pg_type])
    return cursor.fetchone()[0]


@pytest.mark.django_db
@postgresql_only
def test_the_installed_label_function_takes_what_label_call_passes_where_it_passes_it():
    with connection.cursor() as cursor:
        installed = _function_arguments(cursor, "hone_label")
        declared = [
            (f"v_{name}", "i", _type_name(cursor, pg_type))
            for name, pg_type in functions.LABEL_ARGUMENTS
        ]
    given = {column.name: f"value of {column.name}" for column in columns.LABEL_INPUT}
    now = timezone.now()

    sql, params = label_call(user_id=3, assignment_id=7, now=now, **given)

    assert [argument for argument in installed if argument[1] == "i"] == declared
    assert sql.count("%s") == len(params)
    names = [name for name, mode, _ in installed if mode == "i"]
    passed = dict(zip(names, params, strict=True))
    assert json.loads(passed.pop("v_after")) == {
        "choice": "value of choice",
        "strength": "value of strength",
        "rationale": "value of rationale",
        "review_status": "unreviewed",
    }
    assert passed == {
        "v_assignment_id": 7,
        "v_user_id": 3,
        "v_now": now,
        **{f"v_{name}": value for name, value in given.items()},
    }


@pytest.mark.django_db
@postgresql_only
def test_the_label_table_stores_each_of_the_annotators_values_as_the_function_takes_it():
    table = PreferenceLabel._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s",
            [table],
        )
        column_types = dict(cursor.fetchall())
        # An argument is stored in its column as is, or through an implicit or assignment cast.
        storable = {}
        for column in columns.LABEL_INPUT:
            cursor.execute(
                """
                SELECT %s::regtype = %s::regtype OR EXISTS (
                       SELECT 1 FROM pg_cast
                        WHERE castsource = %s::regtype AND casttarget = %s::regtype
                          AND castcontext IN ('i', 'a'))
                """,
                [column.pg_type, column_types[column.name]] * 2,
            )
            storable[column.name] = cursor.fetchone()[0]

    assert set(column_types) == {"id", *(column.name for column in columns.LABEL_COLUMNS)}
    assert storable == {column.name: True for column in columns.LABEL_INPUT}


@pytest.mark.django_db
@postgresql_only
def test_submitted_of_reads_each_column_the_installed_label_function_returns():
    with connection.cursor() as cursor:
        installed = _function_arguments(cursor, "hone_label")
    returned = [name for name, mode, _ in installed if mode == "t"]
    row = tuple(range(len(returned)))  # a distinct value in each column

    submitted = submitted_of(row)

    assert returned == [f"o_{name}" for name, _ in functions.LABEL_RETURNED]
    assert [getattr(submitted, name.removeprefix("o_")) for name in returned] == list(row)


@pytest.mark.django_db
@postgresql_only
def test_the_label_function_returns_the_label_it_stored_and_its_projects_settings(
    project, annotator
):
    project.trigger_new_labels = 4321
    project.gate_human_min_win_rate = 0.625
    project.save()
    (comparison,) = make_comparisons(project, [("first answer", "second answer")])
    lease = assignment_next(project=project, user=annotator)
    given = {"choice": "a", "strength": 2, "rationale": "", "time_spent_ms": 5}

    with connection.cursor() as cursor:
        # Label ids apart from the comparison's and the project's, so that no two columns of
        # the function's row hold the same number.
        label_id = 1000 + comparison.pk + project.pk
        table = PreferenceLabel._meta.db_table
        cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [table, label_id])
        cursor.execute(
            *label_call(user_id=annotator.pk, assignment_id=lease.pk, now=timezone.now(), **given)
        )
        submitted = submitted_of(cursor.fetchone())

    assert PreferenceLabel.objects.get().pk == label_id + 1
    assert submitted == Submitted(
        "created",
        label_id=label_id + 1,
        comparison_id=comparison.pk,
        project_id=project.pk,
        a_shown_left=lease.a_shown_left,
        is_repeat=False,
        status="active",
        trigger_new_labels=4321,
        human_gate=0.625,
    )
