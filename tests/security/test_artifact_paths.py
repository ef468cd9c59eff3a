"""Artifact paths stay inside ARTIFACT_ROOT: a row whose path names an absolute system file,
climbs out with `../` or follows a link out is never served, and the admin cannot set one."""

from __future__ import annotations

import pytest

from training.models import DatasetSnapshot, PolicyVersion

API = "/api/projects/demo/"
SECRET = b"root:x:0:0:not for download\n"
OUTSIDE = {
    "absolute": lambda secret: str(secret),
    "climbing": lambda secret: "../secret.txt",
    "climbing from a subfolder": lambda secret: "projects/1/snapshots/../../../../secret.txt",
}


@pytest.fixture
def secret(project, tmp_path, settings):
    """A file next to the artifact root (tmp_path/artifacts), not inside it."""
    path = tmp_path / "secret.txt"
    path.write_bytes(SECRET)
    (settings.ARTIFACT_ROOT / "projects" / "1" / "snapshots").mkdir(parents=True)
    return path


def _snapshot(project, path: str) -> DatasetSnapshot:
    return DatasetSnapshot.objects.create(
        project=project, path=path, sha256="0" * 64, pair_count=1, label_ids=[]
    )


@pytest.mark.parametrize("where", list(OUTSIDE))
def test_a_snapshot_path_outside_the_artifact_root_is_not_served(
    where, project, secret, admin_member, token_client
):
    snapshot = _snapshot(project, OUTSIDE[where](secret))

    response = token_client(admin_member).get(API + f"snapshots/{snapshot.pk}/download/")

    assert response.status_code == 404
    assert response.json() == {
        "errors": [
            {
                "field": "detail",
                "message": "The snapshot's file is missing from the artifact store.",
            }
        ]
    }
    assert b"not for download" not in response.content


def test_a_link_out_of_the_artifact_root_is_not_followed(
    project, secret, settings, admin_member, token_client
):
    (settings.ARTIFACT_ROOT / "leak.jsonl").symlink_to(secret)
    snapshot = _snapshot(project, "leak.jsonl")

    response = token_client(admin_member).get(API + f"snapshots/{snapshot.pk}/download/")

    assert response.status_code == 404
    assert b"not for download" not in response.content


@pytest.mark.parametrize("where", list(OUTSIDE))
def test_artifact_path_refuses_a_path_outside_the_root(where, secret):
    from training.services import ArtifactPathError, artifact_path

    relative = OUTSIDE[where](secret)

    with pytest.raises(ArtifactPathError) as refused:
        artifact_path(relative)

    assert str(refused.value) == (
        f"The artifact path {relative!r} leads outside the artifact root: artifact paths are "
        "relative to ARTIFACT_ROOT and stay inside it."
    )


def test_artifact_path_resolves_a_path_inside_the_root(secret, settings):
    from training.services import artifact_path

    assert artifact_path("projects/1/snapshots/../snapshots/a.jsonl") == (
        settings.ARTIFACT_ROOT.resolve() / "projects/1/snapshots/a.jsonl"
    )


def test_the_admin_cannot_set_a_snapshot_path(project, secret, admin_client):
    snapshot = _snapshot(project, "projects/1/snapshots/a.jsonl")
    url = f"/admin/training/datasetsnapshot/{snapshot.pk}/change/"

    page = admin_client.get(url)
    response = admin_client.post(
        url,
        {
            "project": project.pk,
            "path": str(secret),
            "sha256": "1" * 64,
            "pair_count": 1,
            "label_ids": "[]",
            "counts": '{"pairs": 1}',
            "_save": "Save",
        },
    )

    snapshot.refresh_from_db()
    assert page.status_code == 200
    assert b'name="path"' not in page.content
    assert response.status_code == 302
    assert (snapshot.path, snapshot.sha256) == ("projects/1/snapshots/a.jsonl", "0" * 64)


def test_the_admin_cannot_set_an_adapter_path(project, admin_client):
    base = PolicyVersion.objects.get(project=project, number=0)

    page = admin_client.get(f"/admin/training/policyversion/{base.pk}/change/")

    assert page.status_code == 200
    assert b'name="adapter_path"' not in page.content
    assert b'name="status"' not in page.content
