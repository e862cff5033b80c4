package chaos_test

import (
	"context"
	"strings"
	"testing"

	"github.com/taskd/taskd/client"
	"github.com/taskd/taskd/internal/chaos"
	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/internal/taskdtest"
)

// TestShippedBinaryHasNoChaosKinds: the fault suite's kinds (one of them
// exits its process) exist only in the chaos build, never in the binary
// `go build ./cmd/taskd` makes.
func TestShippedBinaryHasNoChaosKinds(t *testing.T) {
	db := pgtest.NewDB(t)
	for _, tc := range []struct {
		tags []string
		want bool
	}{{nil, false}, {chaos.BuildTags, true}} {
		p := taskdtest.Start(t, taskdtest.Options{DatabaseURL: db, BuildTags: tc.tags,
			Env: []string{"TASKD_DB_MAX_CONNS=3", "TASKD_UI=false"}})
		c, err := client.New(p.URL, client.Config{})
		if err != nil {
			t.Fatal(err)
		}
		ks, err := c.Kinds(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		found := 0
		for _, k := range ks {
			if strings.HasPrefix(k.Name, "chaos_") {
				found++
			}
		}
		if got := found == 2; got != tc.want || (!tc.want && found > 0) {
			t.Errorf("tags %v: %d chaos kinds listed, want them: %v", tc.tags, found, tc.want)
		}
		if err := p.Stop(); err != nil {
			t.Fatal(err)
		}
	}
}
