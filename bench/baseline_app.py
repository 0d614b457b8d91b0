"""The baseline every ingest figure is compared with: a bare Starlette route that reads the
body and answers 201 with a small JSON document, under the same uvicorn settings."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def create_event(request: Request) -> Response:
    await request.body()
    return Response(b'{"status":"created"}', 201, media_type="application/json")


app = Starlette(routes=[Route("/api/v1/events", create_event, methods=["POST"])])
