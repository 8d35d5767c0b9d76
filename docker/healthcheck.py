"""Docker HEALTHCHECK of the image: exit 0 when /health answers (standard library only).

One image runs either role, so it asks the worker's port (EMAIL_SERVICE_HTTP_PORT, 8080)
and the API's (EMAIL_SERVICE_API_PORT, 8081); whichever role runs answers.
"""

import os
import sys
import urllib.request

#: Seconds one request may take; Docker's own --timeout bounds the whole check.
TIMEOUT_S = 3


def main() -> int:
    ports = {
        os.environ.get("EMAIL_SERVICE_HTTP_PORT") or "8080",
        os.environ.get("EMAIL_SERVICE_API_PORT") or "8081",
    }
    for port in sorted(ports):
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/health", timeout=TIMEOUT_S
            ) as response:
                if response.status == 200:
                    return 0
        except OSError:
            continue
    return 1


if __name__ == "__main__":
    sys.exit(main())
