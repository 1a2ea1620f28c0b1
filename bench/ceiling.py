"""The ceiling: a bare WSGI callable returning one fixed body, served by gunicorn like the app."""

BODY = (
    b'{"recording_id":"conf_1234567890","status":"completed","duration":342,'
    b'"recording_url":"https://voice.africastalking.com/recording/abc123def456",'
    b'"created_at":"2024-01-15T10:00:00.000Z","processed_at":"2024-01-15T10:05:42.000Z","failure_reason":null}'
)
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def app(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
