"""Request bodies have a size limit: the labeling endpoints' HONE_LABELING_MAX_BODY_BYTES,
enforced before the caller is known (the fast path reads no further than it), and Django's
DATA_UPLOAD_MAX_MEMORY_SIZE for other JSON and form bodies. Past it: 413 with a message (the
API's error body, plain text for a page), nothing stored."""

from __future__ import annotations

import json

import pytest
from django.core.asgi import get_asgi_application
from rest_framework.test import APIClient

from api import fastpath
from feedback.models import Assignment, LabelAudit, PreferenceLabel, Prompt
from tests.api.test_fastpath import NEXT, Caller, label_url, run
from tests.asgi import on_both_paths, post
from tests.factories import make_comparisons

LIMIT = 64 * 1024
CHUNK = 16 * 1024
TOO_LARGE = {
    "errors": [
        {
            "field": "detail",
            "message": f"The request body is larger than {LIMIT} bytes, the most this "
            "endpoint accepts.",
        }
    ]
}


@pytest.fixture(autouse=True)
def labeling_limit(settings):
    settings.HONE_LABELING_MAX_BODY_BYTES = LIMIT


@pytest.mark.django_db
@pytest.mark.parametrize("path", [NEXT, label_url(1)])
def test_the_fast_path_stops_reading_at_the_limit_before_it_knows_the_caller(path):
    """8 MiB in 16 KiB chunks, no credentials, no Content-Length: the fifth chunk passes the
    limit, and nothing after it is read."""
    app = fastpath.LabelingFastPath(get_asgi_application())
    chunk = b"x" * CHUNK

    answer = run_async(post(app, path, headers=[(b"host", b"127.0.0.1")], chunks=[chunk] * 512))

    assert (answer.status, answer.json(), answer.chunks_read) == (413, TOO_LARGE, 5)
    assert dict(answer.headers)[b"Content-Type"] == b"application/json"
    assert dict(answer.headers)[b"Connection"] == b"close"
    assert app.served == {"too_large": 1}


@pytest.mark.django_db
@pytest.mark.parametrize("path", [NEXT, label_url(1)])
def test_a_content_length_over_the_limit_is_refused_unread(path):
    app = fastpath.LabelingFastPath(get_asgi_application())
    headers = [(b"host", b"127.0.0.1")]

    answer = run_async(
        post(app, path, headers=headers, chunks=[b"x" * CHUNK], content_length=200 * 2**20)
    )

    assert (answer.status, answer.json(), answer.chunks_read) == (413, TOO_LARGE, 0)
    assert app.served == {"too_large": 1}


@on_both_paths
def test_both_paths_refuse_a_label_one_byte_over_the_limit_and_take_one_at_it(
    path, project, annotator
):
    make_comparisons(project, [("x", "y")])
    caller = Caller(None, user=annotator)
    label = json.dumps({"choice": "a", "rationale": "fine"}).encode()
    at_limit = label + b" " * (LIMIT - len(label))

    async def scenario(app):
        caller.app = app
        item = (await caller.post(NEXT))[2]
        url = label_url(json.loads(item)["assignment_id"])
        over = await post(
            app, url, headers=caller.headers, chunks=[at_limit + b" "], content_length=LIMIT + 1
        )
        counts = await _django_counts()
        taken = await post(
            app, url, headers=caller.headers, chunks=[at_limit], content_length=LIMIT
        )
        return over, counts, taken

    (over, counts_after_refusal, taken), served = run(path, scenario)

    assert (over.status, over.json()) == (413, TOO_LARGE)
    assert counts_after_refusal == (0, 0, Assignment.Status.ACTIVE)
    assert taken.status == 201
    assert PreferenceLabel.objects.get().rationale == "fine"
    assert served == ({} if path == "django" else {"next": 1, "too_large": 1, "label": 1})


def test_an_api_json_body_over_the_upload_limit_is_refused(admin_member, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    client = APIClient()
    client.force_authenticate(admin_member)
    before = Prompt.objects.count()
    records = [{"prompt": f"Prompt number {i}"} for i in range(100)]  # about 3 KB

    response = client.post("/api/projects/demo/prompts/", {"prompts": records}, format="json")

    assert (response.status_code, response.json()) == (
        413,
        {
            "errors": [
                {
                    "field": "detail",
                    "message": "The request body is larger than 1000 bytes, the most this "
                    "endpoint accepts.",
                }
            ]
        },
    )
    assert Prompt.objects.count() == before


def test_a_page_form_over_the_upload_limit_says_so(client, annotator, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    client.force_login(annotator)

    response = client.post("/p/demo/label/submit/", {"choice": "a", "rationale": "x" * 2000})

    assert (response.status_code, response["Content-Type"], response.content.decode()) == (
        413,
        "text/plain; charset=utf-8",
        "The request body is larger than 1000 bytes, the most this endpoint accepts.",
    )


def run_async(coroutine):
    from asgiref.sync import async_to_sync

    async def main():
        return await coroutine

    return async_to_sync(main)()


async def _django_counts():
    from asgiref.sync import sync_to_async

    def counts():
        return (
            PreferenceLabel.objects.count(),
            LabelAudit.objects.count(),
            Assignment.objects.get().status,
        )

    return await sync_to_async(counts)()
