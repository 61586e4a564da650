package pgtest

import (
	"context"
	"os/exec"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func TestDBIsFreshAndMigrated(t *testing.T) {
	ctx := context.Background()
	urls := []string{DB(t), DB(t)}
	if urls[0] == urls[1] {
		t.Fatalf("two DB calls returned the same database %s", urls[0])
	}
	for i, u := range urls {
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer conn.Close(ctx)
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM objects").Scan(&n); err != nil {
			t.Fatalf("database %d has no objects table: %v", i, err)
		}
		if i == 0 {
			if _, err := conn.Exec(ctx, `INSERT INTO objects (kind, name, spec, hash) VALUES ('Agent', 'x', '{}', 'h')`); err != nil {
				t.Fatal(err)
			}
		} else if n != 0 {
			t.Errorf("second database sees %d objects written to the first", n)
		}
	}
}

func TestEmptyDBHasNoSchema(t *testing.T) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, EmptyDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('objects') IS NOT NULL").Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Error("EmptyDB has an objects table")
	}
}

func TestLiveUsersDropsDeadProcesses(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := user{PID: cmd.Process.Pid}
	reused := self()
	reused.Start = "1" // same pid, different start time: the pid was reused
	got := liveUsers([]user{dead, self(), reused})
	if len(got) != 1 || got[0] != self() {
		t.Errorf("liveUsers = %+v, want only this process %+v", got, self())
	}
}
