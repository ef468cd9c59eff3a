from __future__ import annotations

import pytest


@pytest.fixture
def outsider(make_user, db):
    """A member of another project only."""
    from feedback.services import membership_set, project_create

    other = project_create(slug="other", name="Other", base_model="unused")
    user = make_user("outsider")
    membership_set(project=other, user=user, role="admin")
    return user


@pytest.fixture
def users(annotator, reviewer, admin_member, outsider):
    return {
        "annotator": annotator,
        "reviewer": reviewer,
        "admin": admin_member,
        "outsider": outsider,
        "anonymous": None,
    }
