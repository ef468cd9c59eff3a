"""The fast path remembers a passed CSRF check only for a token sent in the X-CSRFToken header:
a token in a form body is checked every time, as Django checks it, so a request without any
token never passes on the strength of an earlier one."""

from __future__ import annotations

from tests.api.test_fastpath import NEXT, Caller, run
from tests.asgi import FORM, on_both_paths, post
from tests.factories import make_comparisons

MISSING = {"errors": [{"field": "detail", "message": "CSRF Failed: CSRF token missing."}]}


@on_both_paths
def test_a_form_token_passes_once_and_a_request_without_a_token_is_refused_after_it(
    path, project, annotator
):
    make_comparisons(project, [("x", "y")])
    browser = Caller(None, user=annotator)  # session cookie, csrftoken cookie and header
    secret = dict(browser.headers)[b"x-csrftoken"]
    cookie_only = [(k, v) for k, v in browser.headers if k != b"x-csrftoken"]
    form_token = b"csrfmiddlewaretoken=" + secret

    async def scenario(app):
        answers = []
        for headers, body in [
            (cookie_only, form_token),  # the token in the form body: passes
            (cookie_only, b""),  # no token anywhere: refused
            (cookie_only, b"csrfmiddlewaretoken=" + b"0" * 32),  # a wrong one: refused
            (browser.headers, b""),  # the header: passes, and is remembered
            (browser.headers, b""),
            (cookie_only, b""),  # no token: still refused
        ]:
            answer = await post(
                app,
                NEXT,
                headers=headers,
                chunks=[body],
                content_type=FORM,
                content_length=len(body),
            )
            answers.append((answer.status, answer.json() if answer.status == 403 else None))
        return answers

    answers, served = run(path, scenario)

    wrong = {
        "errors": [{"field": "detail", "message": "CSRF Failed: CSRF token from POST incorrect."}]
    }
    assert answers == [
        (200, None),
        (403, MISSING),
        (403, wrong),
        (200, None),
        (200, None),
        (403, MISSING),
    ]
    assert served == ({} if path == "django" else {"next": 3, "django": 3})
