"""What the pages and the API do, in one place: each function takes a session and the acting user's id.

Nothing here knows about HTTP; failures raise the domain errors of :mod:`web.store.errors`
(``NotFound`` for anything that is not the user's own, ``Invalid`` with per-field messages,
``Conflict``, ``LimitExceeded``, ...), which :mod:`web.errors` maps to status codes at the edge.
``users`` still raises :class:`web.errors.ApiError` until ``web/accounts.py`` catches the domain errors.
"""
