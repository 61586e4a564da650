package store_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/certops/certops/store"
)

// TestOpenWaitFailsAtOnceWhenRefused: a database that answers but refuses
// (no such database) is not waited for, however long the wait.
func TestOpenWaitFailsAtOnceWhenRefused(t *testing.T) {
	s := newStore(t)
	u, err := url.Parse(store.URL(s))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/certops_no_such_database"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = store.OpenWait(ctx, u.String(), time.Hour, store.Options{}, nil)
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "3D000") || !strings.Contains(err.Error(), "not retried") {
		t.Fatalf("OpenWait on a missing database: got %v (context: %v), want the refusal at once", err, ctx.Err())
	}
}
