# Everyday loops. `just --list` shows them.

# Run every test (starts a throwaway PostgreSQL unless DATABASE_URL is set).
test:
    go test ./...

# Check go.mod/go.sum are tidy, vet, check formatting, run staticcheck.
lint:
    go mod tidy -diff
    go vet ./...
    test -z "$(gofmt -l .)"
    go tool staticcheck ./...

# Run the whole system locally on the bundled example repo.
demo:
    go run ./cmd/certops demo

# Reconcile benchmarks over the 500/5K/50K fleet ladder, with the floor measured side by side.
bench:
    go test -run '^$' -bench 'Reconcile|Floor' -benchtime 3x -timeout 60m ./bench/

# Quick benchmarks (500 and 5K only).
bench-quick:
    CERTOPS_BENCH_MAX=5000 go test -run '^$' -bench 'Reconcile|Floor' -benchtime 3x ./bench/

# A real `certops serve` at SIZE certificates and SIZE/5 agents, against the packed floor (flags after SIZE: -keep, -timeout 30m).
bench-serve SIZE *FLAGS:
    go run ./bench/serve {{FLAGS}} {{SIZE}}

# Fuzz the YAML loader for a minute.
fuzz:
    go test -run '^$' -fuzz FuzzParseFile -fuzztime 60s ./spec

# Regenerate the committed JSON Schema.
schema:
    go test ./spec -run TestSchema -update
