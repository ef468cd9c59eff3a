"""Project settings are grouped by concern (feedback.models.PROJECT_SETTINGS)."""

import pytest

from feedback.models import PROJECT_SETTINGS, Project


def test_every_project_setting_belongs_to_exactly_one_group():
    grouped = [name for fields in PROJECT_SETTINGS.values() for name in fields]
    editable = [
        f.name for f in Project._meta.concrete_fields if f.editable and f.name not in ("id",)
    ]
    assert len(grouped) == len(set(grouped))
    assert sorted(grouped) == sorted(editable)


def test_the_admin_shows_a_project_by_group(admin_client):
    project = Project.objects.create(slug="grouped", name="Grouped", base_model="tiny")
    page = admin_client.get(f"/admin/feedback/project/{project.pk}/change/").content.decode()
    headings = [group for group in PROJECT_SETTINGS if f">{group}</h2>" in page]
    assert headings == list(PROJECT_SETTINGS)


def test_a_project_chooses_comparisons_fifo_unless_told_otherwise(db):
    from feedback.services import project_create

    project = project_create(slug="plain", name="Plain", base_model="tiny")

    assert project.comparison_strategy == "fifo"


def test_an_unknown_comparison_strategy_is_refused_by_name_and_nothing_is_stored(db):
    from django.core.exceptions import ValidationError

    from feedback.services import project_create

    with pytest.raises(ValidationError) as error:
        project_create(slug="odd", name="Odd", base_model="tiny", comparison_strategy="most_recent")

    assert error.value.message_dict == {
        "comparison_strategy": [
            "'most_recent' is not a comparison strategy: choose fifo or uncertainty."
        ]
    }
    assert not Project.objects.filter(slug="odd").exists()


def test_the_admin_refuses_an_unknown_comparison_strategy(admin_client):
    project = Project.objects.create(slug="kept", name="Kept", base_model="tiny")
    url = f"/admin/feedback/project/{project.pk}/change/"

    page = admin_client.post(url, {"comparison_strategy": "random"}).content.decode()

    assert "Select a valid choice. random is not one of the available choices." in page
    project.refresh_from_db()
    assert project.comparison_strategy == "fifo"
