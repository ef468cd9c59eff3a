"""Artifacts in an S3-compatible object store (a real server, moto's, over HTTP; see the
s3_server fixture): a worker uploads, another downloads through its own cache and checks every
file, a failed upload leaves no row, a corrupt object is refused. And the filesystem store,
the default, as before: in place, no cache."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.factories import LOOP_ANSWERS, labelled
from training import jobs, services
from training.jobs.runner import adapter_of, artifact_publish
from training.models import (
    DatasetSnapshot,
    LoopIteration,
    PolicyVersion,
    RewardModelVersion,
    TrainingRun,
)

KEY = "projects/1/policies/iteration-1"
ARTIFACT_ROOT_STORAGE = "training.services.artifact_store.ArtifactRootStorage"
WEIGHTS = bytes(range(256)) * 40_000  # 10 MB: past boto3's multipart threshold (8 MB)
FILES = {
    "adapter_config.json": b'{"r": 4, "lora_alpha": 8}',
    "adapter_model.safetensors": WEIGHTS,
    "tokenizer/vocab.json": b'{"a": 0}',
}


def adapter_folder(root: Path) -> Path:
    folder = root / "adapter"
    for name, data in FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def files_in(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_bytes(s3_store, key: str) -> bytes:
    found = s3_store.client.get_object(Bucket=s3_store.bucket, Key=f"hone/{key}.manifest.json")
    return found["Body"].read()


# --- Settings ----------------------------------------------------------------------------------


def test_s3_settings_give_the_artifacts_storage_its_bucket_endpoint_and_prefix(settings_with):
    configured = settings_with(
        HONE_ARTIFACT_STORAGE="s3",
        HONE_S3_BUCKET="hone-artifacts",
        HONE_S3_ENDPOINT_URL="https://minio.example.org:9000",
        HONE_S3_REGION="eu-west-3",
        HONE_S3_PREFIX="/prod/",
        HONE_S3_ADDRESSING_STYLE="path",
    )

    assert configured.STORAGES["artifacts"] == {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": "hone-artifacts",
            "endpoint_url": "https://minio.example.org:9000",
            "region_name": "eu-west-3",
            "addressing_style": "path",
            "location": "prod",
            "file_overwrite": True,
            "max_memory_size": 16 * 1024 * 1024,
        },
    }


def test_the_filesystem_is_the_default_store(settings_with, monkeypatch):
    monkeypatch.delenv("HONE_ARTIFACT_STORAGE", raising=False)

    configured = settings_with()

    assert configured.STORAGES["artifacts"] == {"BACKEND": ARTIFACT_ROOT_STORAGE}


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"HONE_ARTIFACT_STORAGE": "s3", "HONE_S3_BUCKET": ""},
            "HONE_ARTIFACT_STORAGE=s3 needs HONE_S3_BUCKET, the bucket artifacts go to "
            "(see .env.example).",
        ),
        (
            {"HONE_ARTIFACT_STORAGE": "gcs"},
            "HONE_ARTIFACT_STORAGE='gcs': expected filesystem or s3.",
        ),
        (
            {"HONE_ARTIFACT_STORAGE": "s3", "HONE_S3_BUCKET": "b", "HONE_S3_ADDRESSING_STYLE": "x"},
            "HONE_S3_ADDRESSING_STYLE='x': expected path, virtual or nothing.",
        ),
    ],
)
def test_incomplete_s3_settings_are_named(settings_with, variables, message):
    with pytest.raises(ImproperlyConfigured) as refused:
        settings_with(**variables)

    assert str(refused.value) == message


# --- Upload, and a download by another worker ----------------------------------------------------


def test_an_adapter_uploaded_by_one_worker_is_downloaded_and_checked_by_another(s3_store, tmp_path):
    stored = services.artifact_store(source=adapter_folder(tmp_path / "work"), key=KEY)

    manifest = manifest_bytes(s3_store, KEY)
    assert stored == services.StoredArtifact(key=KEY, manifest_sha256=sha(manifest))
    assert json.loads(manifest) == {
        "format": 1,
        "kind": "folder",
        "files": {name: {"sha256": sha(data), "size": len(data)} for name, data in FILES.items()},
    }
    assert s3_store.object_keys() == sorted(
        [f"hone/{KEY}/{name}" for name in FILES] + [f"hone/{KEY}.manifest.json"]
    )
    # The worker that uploaded it keeps its folder in its cache: no download for it.
    worker_1 = tmp_path / "worker-1" / stored.manifest_sha256 / "iteration-1"
    assert services.artifact_local(key=KEY, manifest_sha256=stored.manifest_sha256) == worker_1
    assert files_in(worker_1) == FILES

    worker_2_cache = s3_store.cache_of("worker-2")
    local = services.artifact_local(key=KEY, manifest_sha256=stored.manifest_sha256)

    assert local == worker_2_cache / stored.manifest_sha256 / "iteration-1"
    assert files_in(local) == FILES
    assert [p.name for p in worker_2_cache.iterdir()] == [stored.manifest_sha256]
    # Downloaded once: the cached copy serves the next reads, even with the bucket emptied.
    for key in s3_store.object_keys():
        s3_store.client.delete_object(Bucket=s3_store.bucket, Key=key)
    assert services.artifact_local(key=KEY, manifest_sha256=stored.manifest_sha256) == local


def test_a_policy_row_is_written_after_its_upload_and_read_back_by_another_worker(
    project, s3_store, tmp_path
):
    base = PolicyVersion.objects.get(project=project, number=0)
    run = services.run_create(project=project, kind="ppo", config={})

    policy = artifact_publish(
        adapter_folder(tmp_path / "work"),
        KEY,
        lambda stored: services.policy_register(
            project=project,
            parent=base,
            run=run,
            reward_model=None,
            adapter_path=stored.key,
            adapter_manifest_sha256=stored.manifest_sha256,
            metrics={},
        ),
    )

    assert (policy.adapter_path, policy.adapter_manifest_sha256) == (
        KEY,
        sha(manifest_bytes(s3_store, KEY)),
    )
    s3_store.cache_of("worker-2")
    assert files_in(Path(adapter_of(policy))) == FILES


def test_a_snapshot_is_a_file_artifact_served_to_the_api_through_the_web_cache(
    project, annotator, admin_member, token_client, s3_store
):
    labelled(project, annotator, LOOP_ANSWERS[:2], "a")
    snapshot = services.snapshot_create(project=project, name="first")
    s3_store.cache_of("web")

    response = token_client(admin_member).get(
        f"/api/projects/demo/snapshots/{snapshot.pk}/download/"
    )

    body = b"".join(response.streaming_content)
    key = f"projects/{project.pk}/snapshots/first.jsonl"
    assert response.status_code == 200
    assert (snapshot.path, sha(body)) == (key, snapshot.sha256)
    assert snapshot.manifest_sha256 == sha(manifest_bytes(s3_store, key))
    assert json.loads(manifest_bytes(s3_store, key))["files"] == {
        "first.jsonl": {"sha256": snapshot.sha256, "size": len(body)}
    }
    assert s3_store.object_keys() == [f"hone/{key}", f"hone/{key}.manifest.json"]


def test_the_manifest_hash_is_the_same_in_both_stores(s3_store, settings, tmp_path):
    on_s3 = services.artifact_store(source=adapter_folder(tmp_path / "one"), key=KEY)
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.STORAGES = {**settings.STORAGES, "artifacts": {"BACKEND": ARTIFACT_ROOT_STORAGE}}

    on_disk = services.artifact_store(source=adapter_folder(tmp_path / "two"), key=KEY)

    assert on_disk == on_s3


# --- A failed upload leaves no row ---------------------------------------------------------------


def test_a_snapshot_that_cannot_be_uploaded_fails_its_iteration_and_leaves_no_row(
    project, annotator, s3_store, django_capture_on_commit_callbacks
):
    labelled(project, annotator, LOOP_ANSWERS[:2], "a")
    s3_store.client.delete_bucket(Bucket=s3_store.bucket)
    with django_capture_on_commit_callbacks(execute=False):
        iteration = services.iteration_start(project=project, trigger="manual")

    jobs.iteration_run(iteration=iteration)

    iteration.refresh_from_db()
    assert iteration.status == LoopIteration.Status.FAILED
    assert iteration.error.startswith(
        f"ArtifactStoreError: Uploading the artifact projects/{project.pk}/snapshots/"
        "iteration-1.jsonl to the artifact store failed, so nothing was published: "
    )
    assert "NoSuchBucket" in iteration.error
    assert DatasetSnapshot.objects.count() == 0


def test_an_adapter_that_cannot_be_uploaded_fails_its_run_and_leaves_no_row(
    loop_project, s3_store, django_capture_on_commit_callbacks
):
    """The snapshot is in the store; the bucket is gone by the time the reward model is
    trained: the reward run fails with the store's error, and there is no reward model row."""
    with django_capture_on_commit_callbacks(execute=False):
        iteration = services.iteration_start(project=loop_project, trigger="manual")
    snapshot = services.snapshot_create(project=loop_project, name="iteration-1")
    services.iteration_advance(
        iteration=iteration,
        status=LoopIteration.Status.REWARD,
        expected=LoopIteration.Status.COLLECTING,
        snapshot=snapshot,
    )
    for key in s3_store.object_keys():
        s3_store.client.delete_object(Bucket=s3_store.bucket, Key=key)
    s3_store.client.delete_bucket(Bucket=s3_store.bucket)

    jobs.iteration_run(iteration=iteration)

    iteration.refresh_from_db()
    run = TrainingRun.objects.get(iteration=iteration)
    assert (iteration.status, run.kind, run.status) == ("failed", "reward", "failed")
    assert run.error.startswith(
        f"ArtifactStoreError: Uploading the artifact projects/{loop_project.pk}/reward/"
        "iteration-1 to the artifact store failed, so nothing was published: "
    )
    assert "NoSuchBucket" in run.error
    assert run.error in iteration.error
    assert RewardModelVersion.objects.count() == 0


def test_an_unreachable_store_leaves_no_row_and_nothing_in_the_bucket(
    project, s3_store, settings, tmp_path
):
    """The store stops answering (nothing listens at its endpoint any more) in the middle of
    an adapter: no row, and once it is back, no object of the adapter in the bucket."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{probe.getsockname()[1]}"
    artifacts = settings.STORAGES["artifacts"]
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {**artifacts, "OPTIONS": {**artifacts["OPTIONS"], "endpoint_url": nowhere}},
    }
    registered = []

    with pytest.raises(services.ArtifactStoreError) as refused:
        artifact_publish(adapter_folder(tmp_path / "work"), KEY, registered.append)

    assert str(refused.value).startswith(
        f"Uploading the artifact {KEY} to the artifact store failed, so nothing was "
        "published: EndpointConnectionError: Could not connect to the endpoint URL: "
    )
    assert registered == []
    assert (PolicyVersion.objects.count(), s3_store.object_keys()) == (1, [])
    assert not (tmp_path / "worker-1").exists()  # nothing cached either


def test_a_row_that_cannot_be_written_takes_its_objects_away(project, s3_store, tmp_path):
    def register(stored):
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError, match="database went away"):
        artifact_publish(adapter_folder(tmp_path / "work"), KEY, register)

    assert s3_store.object_keys() == []
    assert list((tmp_path / "worker-1").iterdir()) == []  # its cached copy went too
    assert PolicyVersion.objects.count() == 1  # version 0 only


# --- A corrupt download is refused -------------------------------------------------------------


def test_an_object_overwritten_in_the_bucket_is_refused_and_not_kept(s3_store, tmp_path):
    stored = services.artifact_store(source=adapter_folder(tmp_path / "work"), key=KEY)
    s3_store.client.put_object(
        Bucket=s3_store.bucket, Key=f"hone/{KEY}/adapter_model.safetensors", Body=b"other bytes"
    )
    cache = s3_store.cache_of("worker-2")

    with pytest.raises(services.ArtifactCorruptError) as refused:
        services.artifact_local(key=KEY, manifest_sha256=stored.manifest_sha256)

    assert str(refused.value) == (
        f"{KEY}/adapter_model.safetensors in the artifact store has sha256 "
        f"{sha(b'other bytes')}, not the {sha(WEIGHTS)} of its manifest: the download was "
        "refused and not kept."
    )
    assert list(cache.iterdir()) == []


def test_another_artifact_published_under_the_key_is_refused(s3_store, tmp_path):
    """A row's manifest hash names one content: a later upload under its key (a redelivered
    step that trained again) is not what the row recorded."""
    first = services.artifact_store(source=adapter_folder(tmp_path / "one"), key=KEY)
    other = adapter_folder(tmp_path / "two")
    (other / "adapter_config.json").write_bytes(b'{"r": 8}')
    second = services.artifact_store(source=other, key=KEY)
    s3_store.cache_of("worker-2")

    with pytest.raises(services.ArtifactCorruptError) as refused:
        services.artifact_local(key=KEY, manifest_sha256=first.manifest_sha256)

    assert str(refused.value) == (
        f"The artifact {KEY} in the artifact store has manifest sha256 "
        f"{second.manifest_sha256}, not the {first.manifest_sha256} its row recorded: the "
        "store holds another artifact under that key. It was not used."
    )


def test_a_manifest_naming_a_file_outside_the_cache_is_refused(s3_store, tmp_path):
    manifest = json.dumps(
        {"format": 1, "kind": "folder", "files": {"../../escaped": {"sha256": sha(b"x")}}}
    ).encode()
    s3_store.client.put_object(
        Bucket=s3_store.bucket, Key=f"hone/{KEY}.manifest.json", Body=manifest
    )
    s3_store.client.put_object(Bucket=s3_store.bucket, Key="hone/projects/1/escaped", Body=b"x")

    with pytest.raises(services.ArtifactCorruptError) as refused:
        services.artifact_local(key=KEY, manifest_sha256=sha(manifest))

    assert str(refused.value) == (
        f"The manifest of the artifact {KEY} in the artifact store is not valid: the file "
        "name '../../escaped' is not allowed."
    )
    assert [p.name for p in tmp_path.rglob("escaped")] == []


def test_a_corrupt_snapshot_is_not_served(project, annotator, admin_member, token_client, s3_store):
    labelled(project, annotator, LOOP_ANSWERS[:2], "a")
    snapshot = services.snapshot_create(project=project, name="first")
    s3_store.client.put_object(
        Bucket=s3_store.bucket, Key=f"hone/{snapshot.path}", Body=b'{"prompt": "forged"}\n'
    )
    s3_store.cache_of("web")

    response = token_client(admin_member).get(
        f"/api/projects/demo/snapshots/{snapshot.pk}/download/"
    )

    assert response.status_code == 502
    assert response.json() == {
        "errors": [
            {
                "field": "detail",
                "message": "The artifact store's copy of this snapshot does not match the hash "
                "recorded when it was made, so it is not served.",
            }
        ]
    }


def test_a_row_without_a_manifest_hash_cannot_be_read_from_the_object_store(s3_store):
    with pytest.raises(services.ArtifactStoreError) as refused:
        services.artifact_local(key=KEY, manifest_sha256="")

    assert str(refused.value) == (
        "'' is not a manifest hash (64 hex digits): the artifact's row records none, so it "
        "cannot be read from the object store."
    )


@pytest.mark.parametrize("key", ["/etc/passwd", "../secret.txt", "projects/1/../../../secret"])
def test_a_key_outside_the_store_is_refused_before_any_request(s3_store, key):
    with pytest.raises(services.ArtifactPathError):
        services.artifact_local(key=key, manifest_sha256="0" * 64)


# --- The filesystem store (the default) ---------------------------------------------------------


def test_on_the_filesystem_an_artifact_is_moved_into_place_and_read_there(settings, tmp_path):
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.ARTIFACT_CACHE = tmp_path / "cache"
    source = adapter_folder(tmp_path / "work")

    stored = services.artifact_store(source=source, key=KEY)

    in_place = (tmp_path / "artifacts" / KEY).resolve()
    assert services.artifact_local(key=KEY, manifest_sha256=stored.manifest_sha256) == in_place
    assert files_in(in_place) == FILES
    assert not source.exists()
    assert not (tmp_path / "cache").exists()
    assert not list((tmp_path / "artifacts").rglob("*.manifest.json"))
