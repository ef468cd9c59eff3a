from __future__ import annotations

from feedback.models import PreferenceLabel
from tests.factories import make_comparisons


def test_label_page_shows_item_escaped_and_submits(client, project, annotator):
    make_comparisons(project, [("<script>alert(1)</script>", "<img src=x onerror=alert(2)>")])
    client.force_login(annotator)

    page = client.get("/p/demo/label/")
    html = page.content.decode()
    assignment_id = page.context["assignment"].pk
    response = client.post(
        "/p/demo/label/", {"assignment_id": assignment_id, "choice": "tie", "strength": "2"}
    )

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)" not in html
    assert "<img src=x" not in html
    assert response.status_code == 302
    assert PreferenceLabel.objects.get().choice == "tie"


def test_label_page_reports_bad_input_and_stores_nothing(client, project, annotator):
    make_comparisons(project, [("x", "y")])
    client.force_login(annotator)
    assignment_id = client.get("/p/demo/label/").context["assignment"].pk

    response = client.post(
        "/p/demo/label/", {"assignment_id": assignment_id, "choice": "nope"}, follow=True
    )

    assert "Unknown choice" in response.content.decode()
    assert PreferenceLabel.objects.count() == 0


def test_loop_page_is_for_staff_only(client, project, annotator, admin_member):
    client.force_login(annotator)
    assert client.get("/p/demo/").status_code == 404
    client.force_login(admin_member)
    assert client.get("/p/demo/").status_code == 200


def test_navigation_offers_only_the_pages_a_role_may_open(client, project, annotator, admin_member):
    make_comparisons(project, [("x", "y")])

    client.force_login(annotator)
    annotator_page = client.get("/p/demo/label/").content.decode()
    client.force_login(admin_member)
    admin_page = client.get("/p/demo/label/").content.decode()

    assert 'href="/p/demo/"' not in annotator_page
    assert 'href="/p/demo/review/"' not in annotator_page
    assert 'href="/p/demo/arena/"' in annotator_page
    assert 'href="/p/demo/"' in admin_page
    assert 'href="/p/demo/review/"' in admin_page
    assert 'href="/p/demo/data/"' in admin_page
