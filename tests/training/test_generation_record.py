from __future__ import annotations

from feedback.models import Completion, Prompt
from training import services
from training.selectors import policy_active


def test_a_nul_byte_in_model_output_is_stored_as_a_replacement_character(project):
    prompt = Prompt.objects.filter(project=project).first()
    samples = [
        [
            {"text": "bad\x00byte", "token_count": 3, "finish_reason": "length"},
            {"text": "fine", "token_count": 1, "finish_reason": "stop"},
        ]
    ]

    (comparison,) = services.generation_record(
        project=project,
        policy=policy_active(project=project),
        prompts=[prompt],
        samples=samples,
        sampling={},
    )

    assert comparison.completion_a.text == "bad\ufffdbyte"
    assert list(Completion.objects.order_by("id").values_list("text", flat=True)) == [
        "bad\ufffdbyte",
        "fine",
    ]
