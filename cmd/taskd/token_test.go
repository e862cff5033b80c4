package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/taskd/taskd/internal/pgtest"
)

func TestTokenCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := envFunc(map[string]string{"DATABASE_URL": pgtest.NewDB(t)})
	tok := func(args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		err := run(ctx, append([]string{"token"}, args...), env, &out, &errOut)
		return out.String(), errOut.String(), err
	}
	out, msg, err := tok("create", "--name", "ci", "--scope", "submit,work", "--queues", "emails,reports", "--expires", "720h")
	if err != nil {
		t.Fatalf("create: %v\n%s", err, msg)
	}
	token := strings.TrimSpace(out)
	if !strings.HasPrefix(token, "tkd_") || len(token) != 4+43 || strings.Count(out, "\n") != 1 {
		t.Fatalf("create printed %q, want one line: tkd_ and 32 random bytes in base64url", out)
	}
	if _, _, err := tok("create", "--name", "ci", "--scope", "read"); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("second create of ci: %v", err)
	}
	var uerr *usageError
	for _, args := range [][]string{
		{"create", "--name", "x", "--scope", "root"},
		{"create", "--name", "x"},
		{"create", "--name", "bad name", "--scope", "read"},
		{"create", "--name", "x", "--scope", "read", "--expires", "soon"},
		// River UI and /metrics cannot be limited to queues.
		{"create", "--name", "x", "--scope", "admin", "--queues", "emails"},
		{"revoke"},
		{"sideways"},
	} {
		if _, _, err := tok(args...); !errors.As(err, &uerr) {
			t.Errorf("token %v: %v, want a usage error", args, err)
		}
	}
	if _, _, err := tok("create", "--name", "ops", "--scope", "admin"); err != nil {
		t.Fatal(err)
	}

	out, _, err = tok("list")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[1], "submit,work") ||
		!strings.Contains(lines[1], "emails,reports") || !strings.HasPrefix(lines[2], "ops ") {
		t.Errorf("list:\n%s", out)
	}
	if strings.Contains(out, token) || strings.Contains(out, strings.TrimPrefix(token, "tkd_")[:10]) {
		t.Error("list shows the token")
	}
	out, _, err = tok("list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Tokens []struct {
			Name      string     `json:"name"`
			Scopes    []string   `json:"scopes"`
			Queues    []string   `json:"queues"`
			ExpiresAt *time.Time `json:"expires_at"`
			RevokedAt *time.Time `json:"revoked_at"`
		} `json:"tokens"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("list --json: %v: %s", err, out)
	}
	if len(list.Tokens) != 2 || list.Tokens[0].Name != "ci" || list.Tokens[0].ExpiresAt == nil ||
		time.Until(*list.Tokens[0].ExpiresAt) < 719*time.Hour || list.Tokens[1].Queues != nil {
		t.Errorf("list --json: %s", out)
	}

	if out, _, err = tok("revoke", "ci"); err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("revoke: %v %s", err, out)
	}
	if _, _, err := tok("revoke", "ci"); err == nil {
		t.Error("revoking a revoked token succeeded")
	}
	out, _, _ = tok("list", "--json")
	if err := json.Unmarshal([]byte(out), &list); err != nil || list.Tokens[0].RevokedAt == nil {
		t.Errorf("after revoke: %v %s", err, out)
	}
}

// TestServeOffLoopback: with no token, serve refuses a non-loopback
// address (exit 2, saying how to create a token) unless --insecure, which
// it warns of; with a token it listens there.
func TestServeOffLoopback(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDB(t)
	_, port, _ := net.SplitHostPort(freeAddr(t))
	env := map[string]string{"DATABASE_URL": dbURL, "TASKD_ADDR": "0.0.0.0:" + port, "TASKD_DB_MAX_CONNS": "5", "TASKD_LOG_LEVEL": "info"}
	var out syncBuffer
	err := run(context.Background(), []string{"serve"}, envFunc(env), &out, &out)
	var uerr *usageError
	if !errors.As(err, &uerr) || !strings.Contains(err.Error(), "taskd token create --name admin --scope admin") {
		t.Fatalf("serve on 0.0.0.0 with no token: %v, want a usage error (exit 2) naming `taskd token create`", err)
	}
	for _, role := range []string{"api", "worker"} {
		if err := run(context.Background(), []string{role}, envFunc(env), &out, &out); !errors.As(err, &uerr) {
			t.Errorf("%s on 0.0.0.0 with no token: %v, want a usage error", role, err)
		}
	}

	serveUntilHealthy := func(t *testing.T, env map[string]string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		var out syncBuffer
		done := make(chan error, 1)
		go func() { done <- run(ctx, append([]string{"serve"}, args...), envFunc(env), &out, &out) }()
		waitHealthy(t, "http://127.0.0.1:"+port, done)
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("serve: %v\n%s", err, out.String())
		}
		return out.String()
	}
	log := serveUntilHealthy(t, env, "--insecure")
	if !strings.Contains(log, "WARN") && !strings.Contains(log, `"level":"WARN"`) || !strings.Contains(log, "--insecure") {
		t.Errorf("--insecure logged no warning:\n%s", log)
	}
	envInsecure := map[string]string{"TASKD_INSECURE": "true"}
	for k, v := range env {
		envInsecure[k] = v
	}
	if log := serveUntilHealthy(t, envInsecure); !strings.Contains(log, "--insecure") {
		t.Errorf("TASKD_INSECURE logged no warning:\n%s", log)
	}

	if err := run(context.Background(), []string{"token", "create", "--name", "admin", "--scope", "admin"}, envFunc(env), &out, &out); err != nil {
		t.Fatal(err)
	}
	if log := serveUntilHealthy(t, env); strings.Contains(log, "--insecure") {
		t.Errorf("warned of --insecure with a token:\n%s", log)
	}
}
