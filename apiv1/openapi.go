package apiv1

import _ "embed" // the OpenAPI document

// openAPIDocument is openapi.json, kept in a string so nothing can change it.
//
//go:embed openapi.json
var openAPIDocument string

// OpenAPIDocument returns the OpenAPI 3.1 document (JSON) of the read API:
// every route of httpapi.NewHandler but /hooks/ and /agent/v1/, with these
// types as its schemas. It is served at GET /api/v1/openapi.json, and
// docs/openapi.json is a copy of it. The caller owns the returned slice.
func OpenAPIDocument() []byte { return []byte(openAPIDocument) }
