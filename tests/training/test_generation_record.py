from __future__ import annotations

from feedback.models import Completion, Prompt
from training.selectors import policy_active
from training.services import generation_record


def test_a_nul_in_model_output_is_stored_as_a_replacement_character(project):
    prompt = Prompt.objects.filter(project=project).first()
    sample = {"token_count": 3, "finish_reason": "stop"}

    (comparison,) = generation_record(
        project=project,
        policy=policy_active(project=project),
        prompts=[prompt],
        samples=[[{**sample, "text": "a\x00b"}, {**sample, "text": "other"}]],
        sampling={},
    )

    assert Completion.objects.get(pk=comparison.completion_a_id).text == "a\ufffdb"
