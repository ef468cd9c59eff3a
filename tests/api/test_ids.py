from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from feedback.models import Membership
from feedback.services import membership_set


@pytest.mark.parametrize(
    "path",
    [
        "/api/projects/demo/runs/99999999999999999999999/",
        "/api/projects/demo/labels/?comparison=99999999999999999999999",
    ],
)
def test_an_id_too_large_for_the_database_is_a_client_error(project, make_user, path):
    user = make_user("boss")
    membership_set(project=project, user=user, role=Membership.Role.ADMIN)
    client = APIClient()
    client.force_authenticate(user)

    response = client.get(path)

    assert response.status_code in (400, 404)
    assert response.json()["errors"]
