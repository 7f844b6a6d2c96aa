"""A view that enqueues in its request's transaction (ATOMIC_REQUESTS), and one that reads
a task's result."""

from django.http import HttpRequest, JsonResponse
from django.tasks import default_task_backend
from django.views.decorators.csrf import csrf_exempt

from shop.tasks import send_receipt


@csrf_exempt
def place_order(request: HttpRequest) -> JsonResponse:
    order_id = int(request.POST["order_id"])
    result = send_receipt.enqueue(order_id=order_id, email=request.POST["email"])
    if request.POST.get("fail"):
        # The request fails after the enqueue: its transaction rolls back, and the task
        # with it (no receipt for an order that was never placed).
        raise RuntimeError("payment refused")
    return JsonResponse({"task": result.id})


def result(request: HttpRequest, result_id: str) -> JsonResponse:
    found = default_task_backend.get_result(result_id)
    value = found.return_value if found.status == "SUCCESSFUL" else None
    return JsonResponse({"status": found.status, "return_value": value})
