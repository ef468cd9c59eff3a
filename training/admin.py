from django.contrib import admin

from training.models import (
    DatasetSnapshot,
    LoopIteration,
    PolicyVersion,
    RewardModelVersion,
    RunMetric,
    TrainingRun,
)

# Artifact paths are written by the jobs that make the artifacts, never by hand: a path set
# here could point a download or a job at any file of the machine. Statuses move only
# through the services (promotion, rollback, cancel, approve, reject), which audit them.


@admin.register(PolicyVersion)
class PolicyVersionAdmin(admin.ModelAdmin):
    list_display = ["project", "number", "status", "adapter_path", "created_at", "promoted_at"]
    list_filter = ["project", "status"]
    readonly_fields = ["adapter_path", "status", "promoted_at"]


@admin.register(RewardModelVersion)
class RewardModelVersionAdmin(admin.ModelAdmin):
    list_display = ["project", "number", "heldout_accuracy", "created_at"]
    list_filter = ["project"]
    readonly_fields = ["adapter_path"]


@admin.register(DatasetSnapshot)
class DatasetSnapshotAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "pair_count", "sha256", "created_at"]
    list_filter = ["project"]
    readonly_fields = ["path", "sha256", "label_ids"]


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
