"""The event contract: what the product's consumer accepts on the stream (DESIGN.md section 3).

``inbound-email-received.schema.json`` is the contract as JSON Schema, versioned with the
code; ``check`` checks entries against it; ``formats`` holds its e-mail and UUID rules as
plain functions.
"""
