// Package revoke publishes the revocations declared in Git (spec kind
// Revocation, recorded by the reconciler's apply in package store): a
// signed CRL and an OCSP responder per local CA issuer, served by every
// replica from Postgres on the public /pki/v1/ routes (Handler), and the
// revocation of ACME certificates at their CA (Revoker, run by the
// leader).
package revoke
