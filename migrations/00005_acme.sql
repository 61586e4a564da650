-- ACME issuance state shared by the replicas: orders in progress and the
-- http-01 challenges the deploying agents are asked to serve. Nothing here
-- is secret: a key authorization is published to the world by design, and
-- the ACME account key stays in its file on the reconciler.

-- +goose Up

-- One ACME order in progress per (certificate, agent), held by the replica
-- running it until it ends; a holder that died is replaced once expires_at
-- has passed.
CREATE TABLE acme_orders (
    certificate text COLLATE "C" NOT NULL,
    agent       text COLLATE "C" NOT NULL,
    spec_hash   text NOT NULL,
    holder      text NOT NULL,
    started_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (certificate, agent)
);

-- http-01 challenges: every agent listed writes key_auth to
-- WEBROOT/.well-known/acme-challenge/TOKEN and confirms; the row is deleted
-- when the CA has validated (or the order failed), and the agents remove
-- the file. Writers bump agent_changes, so every replica reloads them.
CREATE TABLE acme_challenges (
    token       text PRIMARY KEY,
    certificate text COLLATE "C" NOT NULL,
    key_auth    text NOT NULL,
    webroot     text NOT NULL,
    agents      text[] NOT NULL,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The agents that confirmed a challenge's file is in place.
CREATE TABLE acme_challenge_ready (
    token    text NOT NULL REFERENCES acme_challenges (token) ON DELETE CASCADE,
    agent    text COLLATE "C" NOT NULL,
    ready_at timestamptz NOT NULL,
    PRIMARY KEY (token, agent)
);

-- +goose Down
DROP TABLE acme_challenge_ready;
DROP TABLE acme_challenges;
DROP TABLE acme_orders;
