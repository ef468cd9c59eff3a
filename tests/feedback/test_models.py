"""Project settings are grouped by concern (feedback.models.PROJECT_SETTINGS)."""

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
