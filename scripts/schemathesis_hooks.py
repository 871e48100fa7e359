"""Schemathesis hooks for scripts/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

Under OpenAPI 3.1 an integer schema admits a whole number written with a fraction, so the
fuzzer sometimes sends an integer path or query parameter as `1.0` (`/v1/outcomes/people/1.0/
episodes`, `?person_id=1.0`). The API reads path and query integers as digits only and answers
`1.0` with 400 (docs/api.md, "Rules the description cannot state"); JSON
bodies, which are JSON numbers, do take `1.0`. This hook writes such values as digits before
each call, so the checks judge what the API promises. It changes nothing else.
"""

import schemathesis


def _as_digits(values):
    if not values:
        return
    for key, value in list(values.items()):
        if isinstance(value, float) and value.is_integer():
            values[key] = int(value)


@schemathesis.hook
def before_call(context, case, kwargs):
    _as_digits(case.path_parameters)
    _as_digits(case.query)
