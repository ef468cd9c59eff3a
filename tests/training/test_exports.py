from __future__ import annotations

import csv
import io
import json
import math

import pytest
from django.core.management import CommandError, call_command

from feedback.models import PreferenceLabel
from feedback.services import assignment_next, label_submit, membership_set
from tests.factories import make_comparisons
from training.exports import annotator_pseudonym, csv_bytes, preference_rows, vote_rows
from training.services import snapshot_create


def vote(project, user, choice: str, strength: int = 2) -> PreferenceLabel:
    assignment = assignment_next(project=project, user=user)
    return label_submit(user=user, assignment_id=assignment.pk, choice=choice, strength=strength)


@pytest.fixture
def labelled(project, annotator, make_user):
    """Three comparisons on the three train prompts (the third is a chat with a system turn):
    two annotators agree on the first, disagree evenly on the second, tie on the third."""
    project.labels_per_comparison = 2
    project.save()
    make_comparisons(project, [("short", "long answer"), ("one", "two"), ("same", "other")])
    second = make_user("second")
    membership_set(project=project, user=second, role="annotator")
    for choice, strength in (("a", 3), ("a", 1), ("tie", 1)):
        vote(project, annotator, choice, strength)
    for choice, strength in (("a", 1), ("b", 1), ("b", 2)):
        vote(project, second, choice, strength)
    return annotator, second


def test_preference_rows_use_the_snapshot_majority(project, labelled):
    rows = preference_rows(project=project)
    snapshot = snapshot_create(project=project, name="s")
    snapshot_rows = [json.loads(line) for line in (project_path(snapshot)).read_text().splitlines()]

    assert [{k: r[k] for k in ("prompt", "chosen", "rejected", "margin")} for r in rows] == (
        snapshot_rows
    )
    assert [(r["chosen"], r["rejected"], r["margin"]) for r in rows] == [
        (
            [{"role": "assistant", "content": "short"}],
            [{"role": "assistant", "content": "long answer"}],
            2.0,
        ),
        (
            [{"role": "assistant", "content": "other"}],
            [{"role": "assistant", "content": "same"}],
            2.0,  # the tie abstains (the project's default): one voter, strength 2
        ),
    ]
    assert rows[1]["prompt"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi!"},
    ]


def project_path(snapshot):
    from training.services import artifact_path

    return artifact_path(snapshot.path)


def test_standard_style_is_plain_strings(project, labelled):
    rows = preference_rows(project=project, style="standard")

    assert rows[0] == {
        "prompt": "Say hello.",
        "chosen": "short",
        "rejected": "long answer",
        "margin": 2.0,
        "comparison_id": rows[0]["comparison_id"],
    }


def test_auto_style_is_standard_when_no_prompt_is_a_chat(project, annotator):
    make_comparisons(project, [("x", "yy")])
    vote(project, annotator, "b")

    (row,) = preference_rows(project=project)

    assert (row["prompt"], row["chosen"], row["rejected"]) == ("Say hello.", "yy", "x")


def test_no_preference_yet_is_a_clear_error(project):
    with pytest.raises(Exception) as error:
        preference_rows(project=project)

    assert error.value.messages == [
        "Project demo has no comparison with a preference yet (0 without one): "
        "label some comparisons first."
    ]


def test_votes_are_pseudonymous_with_order_strength_and_review_status(project, labelled):
    first, second = labelled
    rows = vote_rows(project=project)

    assert len(rows) == 6
    assert {r["annotator"] for r in rows} == {
        annotator_pseudonym(project=project, user_id=first.pk),
        annotator_pseudonym(project=project, user_id=second.pk),
    }
    assert annotator_pseudonym(project=project, user_id=first.pk).startswith("ann_")
    assert second.username not in json.dumps(rows)
    label = PreferenceLabel.objects.filter(annotator=first).order_by("id").first()
    row = next(r for r in rows if r["label_id"] == label.pk)
    assert {k: row[k] for k in ("choice", "strength", "review_status", "shown_left")} == {
        "choice": "a",
        "strength": 3,
        "review_status": "unreviewed",
        "shown_left": "a" if label.a_shown_left else "b",
    }


def test_export_command_writes_jsonl_hf_and_csv(project, labelled, tmp_path, capsys):
    from datasets import load_from_disk

    call_command("export_preferences", "--project", "demo", "--out", str(tmp_path / "p.jsonl"))
    call_command(
        "export_preferences", "--project", "demo", "--out", str(tmp_path / "hf"), "--format", "hf"
    )
    call_command(
        "export_preferences",
        "--project",
        "demo",
        "--out",
        str(tmp_path / "v.csv"),
        "--votes",
        "--format",
        "csv",
    )
    with pytest.raises(CommandError) as error:
        call_command(
            "export_preferences",
            "--project",
            "demo",
            "--out",
            str(tmp_path / "x"),
            "--format",
            "csv",
        )

    lines = (tmp_path / "p.jsonl").read_text().splitlines()
    dataset = load_from_disk(str(tmp_path / "hf"))
    votes = list(csv.DictReader(io.StringIO((tmp_path / "v.csv").read_text())))
    assert len(lines) == 2
    assert dataset.column_names == ["prompt", "chosen", "rejected", "margin", "comparison_id"]
    assert dataset[0]["chosen"] == [{"role": "assistant", "content": "short"}]
    assert len(votes) == 6
    assert str(error.value) == "Preferences export as one of ['jsonl', 'hf']."
    assert not (tmp_path / "x").exists()
    assert "Wrote 2 preferences rows to" in capsys.readouterr().out


def test_exported_files_train_with_trl_reward_trainer_as_they_are(
    project, labelled, tmp_path, tiny_model_dir
):
    """The round trip: a file Hone exports goes straight into TRL's RewardTrainer."""
    import torch
    from datasets import load_dataset, load_from_disk
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    torch.set_num_threads(1)
    call_command("export_preferences", "--project", "demo", "--out", str(tmp_path / "p.jsonl"))
    call_command(
        "export_preferences",
        "--project",
        "demo",
        "--out",
        str(tmp_path / "hf"),
        "--format",
        "hf",
        "--style",
        "standard",
    )
    datasets = {
        "jsonl, conversational": load_dataset(
            "json", data_files=str(tmp_path / "p.jsonl"), split="train"
        ),
        "datasets folder, standard": load_from_disk(str(tmp_path / "hf")),
    }

    for name, dataset in datasets.items():
        torch.manual_seed(0)
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
        model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
        before = model.score.weight.detach().clone()
        trainer = RewardTrainer(
            model=model,
            args=RewardConfig(
                output_dir=str(tmp_path / "out" / name.replace(" ", "_").replace(",", "")),
                max_steps=2,
                per_device_train_batch_size=2,
                learning_rate=1e-2,
                logging_steps=1,
                bf16=False,
                gradient_checkpointing=False,
                save_strategy="no",
                report_to=[],
                use_cpu=True,
                dataloader_num_workers=0,
                dataset_num_proc=None,
            ),
            train_dataset=dataset,
            processing_class=tokenizer,
        )
        result = trainer.train()

        assert result.global_step == 2, name
        assert math.isfinite(result.training_loss), name
        assert not torch.equal(before, model.score.weight.detach()), name


def test_votes_csv_neutralises_formulas_in_model_output(project, annotator):
    make_comparisons(project, [('=HYPERLINK("http://x")', "plain")])
    vote(project, annotator, "a")

    (row,) = csv.DictReader(io.StringIO(csv_bytes(vote_rows(project=project)).decode()))

    assert row["completion_a"] == '\'=HYPERLINK("http://x")'
    assert row["completion_b"] == "plain"
    assert vote_rows(project=project)[0]["completion_a"] == '=HYPERLINK("http://x")'
