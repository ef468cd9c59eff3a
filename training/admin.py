import django_celery_beat.admin as beat_admin  # registers the schedule admins: replaced below
from django.contrib import admin
from django.http import HttpRequest
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from training.models import (
    DatasetSnapshot,
    DemonstrationSnapshot,
    LoopIteration,
    PolicyVersion,
    RewardModelVersion,
    RunMetric,
    SFTVersion,
    TrainingRun,
)
from training.services import loop_schedule_edits_audited

# Artifact paths and manifest hashes are written by the jobs that make the artifacts, never
# by hand: a path set here could point a download or a job at any file of the machine. Statuses
# move only through the services (promotion, rollback, cancel, approve, reject), which audit
# them.


@admin.register(PolicyVersion)
class PolicyVersionAdmin(admin.ModelAdmin):
    list_display = ["project", "number", "status", "adapter_path", "created_at", "promoted_at"]
    list_filter = ["project", "status"]
    readonly_fields = ["adapter_path", "adapter_manifest_sha256", "status", "promoted_at"]


@admin.register(RewardModelVersion)
class RewardModelVersionAdmin(admin.ModelAdmin):
    list_display = ["project", "number", "heldout_accuracy", "created_at"]
    list_filter = ["project"]
    readonly_fields = ["adapter_path", "adapter_manifest_sha256"]


@admin.register(DatasetSnapshot)
class DatasetSnapshotAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "pair_count", "sha256", "created_at"]
    list_filter = ["project"]
    readonly_fields = ["path", "manifest_sha256", "sha256", "label_ids"]


@admin.register(SFTVersion)
class SFTVersionAdmin(admin.ModelAdmin):
    list_display = ["project", "number", "heldout_loss", "created_at"]
    list_filter = ["project"]
    readonly_fields = ["adapter_path", "adapter_manifest_sha256"]


@admin.register(DemonstrationSnapshot)
class DemonstrationSnapshotAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "demonstration_count", "sha256", "created_at"]
    list_filter = ["project"]
    readonly_fields = ["path", "manifest_sha256", "sha256", "demonstration_ids"]


@admin.register(LoopIteration)
class LoopIterationAdmin(admin.ModelAdmin):
    list_display = ["project", "number", "trigger", "status", "created_at", "finished_at"]
    list_filter = ["project", "status"]
    readonly_fields = ["status"]


class RunMetricInline(admin.TabularInline):
    model = RunMetric
    extra = 0
    readonly_fields = ["step", "values", "at"]


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "kind", "status", "worker", "queued_at", "finished_at"]
    list_filter = ["project", "kind", "status"]
    inlines = [RunMetricInline]


# --- Schedules (django-celery-beat) ----------------------------------------------------------
# A project's loop schedule is a PeriodicTask ("hone-loop-<slug>") on a CrontabSchedule row
# that projects with the same cron share. Its pages write those rows directly; every page that
# can change one (the form, the list's actions, delete, a schedule row with its inline tasks)
# runs inside loop_schedule_edits_audited, which records what changed per project.


class ScheduleEditsAudited:
    def changeform_view(self, request: HttpRequest, *args, **kwargs):
        with loop_schedule_edits_audited(actor=request.user):
            return super().changeform_view(request, *args, **kwargs)

    def changelist_view(self, request: HttpRequest, *args, **kwargs):
        with loop_schedule_edits_audited(actor=request.user):
            return super().changelist_view(request, *args, **kwargs)

    def delete_view(self, request: HttpRequest, *args, **kwargs):
        with loop_schedule_edits_audited(actor=request.user):
            return super().delete_view(request, *args, **kwargs)


for model, base in [
    (PeriodicTask, beat_admin.PeriodicTaskAdmin),
    (CrontabSchedule, beat_admin.CrontabScheduleAdmin),
    (IntervalSchedule, beat_admin.IntervalScheduleAdmin),
    (SolarSchedule, beat_admin.SolarScheduleAdmin),
    (ClockedSchedule, beat_admin.ClockedScheduleAdmin),
]:
    admin.site.unregister(model)
    admin.site.register(model, type(base.__name__, (ScheduleEditsAudited, base), {}))
