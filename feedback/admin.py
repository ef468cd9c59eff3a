import rest_framework.authtoken.admin as token_admin  # registers TokenProxy: replaced below
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest
from rest_framework.authtoken.models import TokenProxy

from feedback.models import (
    PROJECT_SETTINGS,
    Assignment,
    AuditEvent,
    Comparison,
    ComparisonAudit,
    Completion,
    Demonstration,
    DemonstrationAudit,
    LabelAudit,
    Membership,
    PreferenceLabel,
    Project,
    Prompt,
)
from feedback.services import (
    annotator_erase,
    api_token_create,
    api_token_delete,
    membership_remove,
    membership_set,
    project_pseudonym_key_rotate,
    project_settings_set,
)


class ReadOnlyAdmin:
    """Rows the admin may show but never add, change or delete: labels change only through
    the pages that audit them, audit rows never change."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


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

    def save_model(self, request: HttpRequest, obj: Project, form, change: bool) -> None:
        if not change:
            return super().save_model(request, obj, form, change)
        # Through the service, so that each group of settings that changed is audited.
        values = {name: getattr(obj, name) for name in form.changed_data}
        project_settings_set(project=obj, values=values, actor=request.user)

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:
        """Members are added, changed and removed through the services, which audit them; a
        removal closes the member's leases and sockets, a new role their sockets."""
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)
        formset.save(commit=False)
        for membership in formset.deleted_objects:
            membership_remove(project=form.instance, user=membership.user, actor=request.user)
        for membership, changed in formset.changed_objects:
            if "user" in changed:  # the row now names someone else: the first one leaves
                previous = Membership.objects.get(pk=membership.pk).user
                membership_remove(project=form.instance, user=previous, actor=request.user)
        for membership in [m for m, _ in formset.changed_objects] + formset.new_objects:
            membership_set(
                project=form.instance,
                user=membership.user,
                role=membership.role,
                actor=request.user,
            )


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "split", "source", "__str__"]
    list_filter = ["project", "split"]


@admin.register(Completion)
class CompletionAdmin(admin.ModelAdmin):
    list_display = ["id", "prompt", "kind", "policy_version", "token_count", "finish_reason"]
    list_filter = ["kind", "prompt__project"]
    raw_id_fields = ["prompt"]


class ComparisonAuditInline(ReadOnlyAdmin, admin.TabularInline):
    model = ComparisonAudit
    extra = 0
    readonly_fields = ["actor", "action", "before", "after", "at"]


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


class LabelAuditInline(ReadOnlyAdmin, admin.TabularInline):
    model = LabelAudit
    extra = 0
    readonly_fields = ["actor", "action", "before", "after", "at"]


@admin.register(PreferenceLabel)
class PreferenceLabelAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    """Shown, never edited: a label changes only through the labeling and review pages, which
    audit each change; it is never deleted (reviewers reject it instead)."""

    list_display = ["id", "comparison", "annotator", "choice", "strength", "review_status"]
    list_filter = ["choice", "review_status", "comparison__project"]
    inlines = [LabelAuditInline]


class DemonstrationAuditInline(ReadOnlyAdmin, admin.TabularInline):
    model = DemonstrationAudit
    extra = 0
    readonly_fields = ["actor", "action", "before", "after", "at"]


@admin.register(Demonstration)
class DemonstrationAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    """Shown, never edited: a demonstration changes only through the review page and the API,
    which audit each change (its text, who reviewed it)."""

    list_display = ["id", "project", "prompt", "origin", "author", "review_status", "created_at"]
    list_filter = ["origin", "review_status", "project"]
    inlines = [DemonstrationAuditInline]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ["at", "project", "actor", "action", "target_type", "target_id"]
    list_filter = ["action", "project"]
    list_select_related = ["project", "actor"]
    date_hierarchy = "at"


# --- People -----------------------------------------------------------------------------------


admin.site.unregister(TokenProxy)


@admin.register(TokenProxy)
class TokenAdmin(token_admin.TokenAdmin):
    """API tokens: created and deleted through the services that audit them; a token never
    changes hands (delete it and create another)."""

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: TokenProxy, form, change: bool) -> None:
        token = api_token_create(user=obj.user, actor=request.user)
        obj.key, obj.created = token.key, token.created

    def delete_model(self, request: HttpRequest, obj: TokenProxy) -> None:
        api_token_delete(user=obj.user, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for token in queryset.select_related("user"):
            api_token_delete(user=token.user, actor=request.user)


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class PersonAdmin(UserAdmin):
    """Django's user admin, and the erasure of a person on a data-protection request (the
    rows stay: labels keep counting under a pseudonym)."""

    actions = ["erase", "erase_with_rationales"]

    @admin.action(
        description="Erase the selected people (anonymise; their labels keep counting)",
        permissions=["change"],
    )
    def erase(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._erase(request, queryset, rationales=False)

    @admin.action(
        description="Erase the selected people and blank their rationales and flag notes",
        permissions=["change"],
    )
    def erase_with_rationales(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._erase(request, queryset, rationales=True)

    def _erase(self, request: HttpRequest, queryset: QuerySet, *, rationales: bool) -> None:
        erased = [
            annotator_erase(user=user, actor=request.user, rationales=rationales).pseudonym
            for user in queryset
        ]
        self.message_user(request, f"Erased {len(erased)}: now {', '.join(erased)}.")
