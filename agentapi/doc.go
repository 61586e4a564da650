// Package agentapi is the server side of the agent protocol (see
// agentproto). It is made of parts, each with one job, that cmd/certops
// wires together:
//
//   - Snapshot: this replica's in-memory copy of what agents see — the
//     applied Agents and Certificates (tokens, targets), every deployment,
//     the published http-01 challenges and each agent's cached ETag, so an
//     idle agent's conditional poll costs no database query. Its Run asks
//     Postgres once a second, in one cheap query, whether a revision was
//     applied or any replica changed a deployment, and reloads only what
//     moved.
//   - Presence: last seen, version and hostname of the agents, kept in
//     memory and flushed to Postgres in batches; the fleet's liveness.
//   - Issuance: checks an issue request (assigned, spec current, backoff,
//     CSR matching the spec) and signs through the certificate's issuer,
//     or hands an ACME certificate to Orders.
//   - Orders: runs ACME orders in the background under a claim in
//     Postgres and publishes their http-01 challenges to the agents.
//   - Ledger: records issuances, refusals (with backoff) and agents'
//     reports in Postgres and applies them to the Snapshot at once.
//   - Announcer: delivers failure events in the background, boundedly.
//   - Handler: the HTTP adapter — routes, bearer-token authentication (the
//     SHA-256 of the token names the agent), bodies, and failure errors
//     as answers.
//   - Metrics and the StateCollector of the certificate and agent gauges,
//     read from the Snapshot (assessed once per snapshot generation; the
//     per-certificate series rendered then as exposition text, see
//     WriteMetricsText) and Presence.
//
// Every replica serves the protocol; there is no leader for it.
package agentapi
