from tests.conftest import TenantFixture
from tests.factories import event_body


async def test_post_and_read_back(client, tenant: TenantFixture) -> None:
    body = event_body(payload={"id": "c-1", "email": "a@example.com"})
    created = await client.post("/api/v1/events", json=body, headers=tenant.headers)
    assert created.status_code == 201, created.text
    fetched = await client.get(f"/api/v1/events/{body['id']}", headers=tenant.headers)
    assert fetched.status_code == 200
    assert fetched.json() == created.json()
