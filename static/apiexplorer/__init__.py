"""The API explorer's page and scripts (installed as `channelstream.apiexplorer`).

`index.html` is served at `/api-explorer`; the other files at `/static/apiexplorer/`. Swagger
UI itself comes from the `swagger-ui-bundle` package (`/static/swagger-ui/`).
"""
