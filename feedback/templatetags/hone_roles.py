"""The viewer's role in a project, so that the navigation offers only the pages they may open."""

from django import template

from feedback.models import Membership

register = template.Library()


@register.simple_tag
def project_role(project, user) -> str:
    """ "annotator", "reviewer", "admin", or "" for a non-member."""
    if project is None or not getattr(user, "is_authenticated", False):
        return ""
    return (
        Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
        or ""
    )
