from django.contrib import admin

from feedback import services
from feedback.models import (
    PROJECT_SETTINGS,
    Assignment,
    Comparison,
    ComparisonAudit,
    Completion,
    LabelAudit,
    Membership,
    PreferenceLabel,
    Project,
    Prompt,
)
from feedback.services import project_pseudonym_key_rotate


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = [
        "slug",
        "name",
        "base_model",
        "labels_per_comparison",
        "trigger_new_labels",
        "gate_human_min_win_rate",
    ]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]
    fieldsets = [(group, {"fields": fields}) for group, fields in PROJECT_SETTINGS.items()]
    actions = ["pseudonym_key_rotate"]

    @admin.action(description="Rotate the pseudonym key (exports name annotators anew)")
    def pseudonym_key_rotate(self, request, queryset) -> None:
        for project in queryset:
            project_pseudonym_key_rotate(project=project)
            self.log_change(request, project, "Rotated the pseudonym key.")
        self.message_user(
            request,
            f"New pseudonym keys for {queryset.count()} project(s): their exports name every "
            "annotator anew and cannot be joined with earlier ones.",
        )

    def save_formset(self, request, form, formset, change) -> None:
        """Memberships change through the services: a removal closes the member's leases
        and sockets (membership_end), a new role their sockets (membership_set)."""
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)
        project = form.instance
        for membership in formset.save(commit=False):
            if membership.pk is not None:
                before = Membership.objects.get(pk=membership.pk)
                if before.user_id != membership.user_id:  # the row now names someone else
                    services.membership_end(membership=before)
            services.membership_set(project=project, user=membership.user, role=membership.role)
        for membership in formset.deleted_objects:
            services.membership_end(membership=membership)


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "split", "source", "__str__"]
    list_filter = ["project", "split"]


@admin.register(Completion)
class CompletionAdmin(admin.ModelAdmin):
    list_display = ["id", "prompt", "policy_version", "token_count", "finish_reason"]
    list_filter = ["policy_version__project"]
    raw_id_fields = ["prompt"]


class ComparisonAuditInline(admin.TabularInline):
    model = ComparisonAudit
    extra = 0
    can_delete = False
    readonly_fields = ["actor", "action", "before", "after", "at"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Comparison)
class ComparisonAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "kind", "status", "required_labels", "priority", "created_at"]
    list_filter = ["project", "kind", "status"]
    raw_id_fields = ["prompt", "completion_a", "completion_b"]
    # Decisions change only through the review pages, which audit them (docs/quality.md).
    readonly_fields = [
        "kind", "gold_choice", "final_choice", "final_by", "final_at", "label_count",
    ]  # fmt: skip
    inlines = [ComparisonAuditInline]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "comparison", "annotator", "status", "a_shown_left", "expires_at"]
    list_filter = ["status"]
    raw_id_fields = ["comparison"]


class LabelAuditInline(admin.TabularInline):
    model = LabelAudit
    extra = 0
    can_delete = False
    readonly_fields = ["actor", "action", "before", "after", "at"]


@admin.register(PreferenceLabel)
class PreferenceLabelAdmin(admin.ModelAdmin):
    list_display = ["id", "comparison", "annotator", "choice", "strength", "review_status"]
    list_filter = ["choice", "review_status", "comparison__project"]
    raw_id_fields = ["comparison", "assignment"]
    # Reviews go through the review pages, which audit them.
    readonly_fields = ["choice", "strength", "review_status", "is_repeat", "a_shown_left"]
    inlines = [LabelAuditInline]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # labels are never deleted; reviewers reject them instead
