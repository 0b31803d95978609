from django.db import transaction
from django.http import HttpRequest, JsonResponse

from tests.django_project.shop.models import Widget
from tests.django_project.shop.tasks import add, widget_created


def add_numbers(request: HttpRequest) -> JsonResponse:
    """A sync view: enqueues, then waits for the worker's result."""
    result = add.delay_sync(int(request.GET["x"]), int(request.GET["y"]))
    return JsonResponse({"id": result.id, "sum": result.get_sync(timeout=60)})


def create_widget(request: HttpRequest) -> JsonResponse:
    """Saves a row and publishes its task on commit; ``fail=1`` rolls back."""
    try:
        with transaction.atomic():
            widget = Widget.objects.create(name=request.POST["name"])
            widget_created.delay_on_commit(widget.id)
            if request.POST.get("fail"):
                raise ValueError("rolled back on purpose")
    except ValueError:
        return JsonResponse({"rolled_back": True}, status=409)
    return JsonResponse({"id": widget.id})
