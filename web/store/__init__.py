"""What the pages and the API do, in one place: each function takes a session and the acting user's id.

Nothing here knows about HTTP; failures raise :class:`web.errors.ApiError`
(404 for anything that is not the user's own, 422 with per-field messages
for invalid input, 409 for conflicts).
"""
