"""CORS headers every answer carries (node.http.app adds them on the full path; the fast lane
adds the same to its own answers).  One list of exposed headers for every route, tus included."""

ALLOW_ORIGIN = "*"
EXPOSE_HEADERS = ("Location, ETag, Content-Range, Accept-Ranges, Upload-Offset, Upload-Length, "
                  "Upload-Metadata, Upload-Expires, Tus-Resumable, Tus-Version, Tus-Extension, "
                  "Tus-Max-Size, Tus-Checksum-Algorithm, Retry-After, X-Served-By")
