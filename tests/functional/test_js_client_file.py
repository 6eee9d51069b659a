"""`/static/channelstream.js`, the browser client, is served to any page (API.md §3 Clients):
no signature, CORS on, a JavaScript module. Its behaviour is tested in tests/browser."""

from tests.functional.conftest import ApiClient


def test_the_browser_client_is_served_as_a_javascript_module(client: ApiClient) -> None:
    response = client.get("/static/channelstream.js", headers={"Origin": "http://app.example"})
    assert response.content_type in ("text/javascript", "application/javascript")
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "export class ChannelStreamConnection" in response.text


def test_with_allow_cors_the_page_origin_is_echoed(make_client) -> None:
    client = make_client(allow_cors="http://app.example")
    response = client.get("/static/channelstream.js", headers={"Origin": "http://app.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "http://app.example"
