package taskdtest_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/internal/taskdtest"
)

// tokenCmd runs `taskd token ARGS...` on dbURL and returns its stdout.
func tokenCmd(t *testing.T, dbURL string, args ...string) string {
	t.Helper()
	cmd := exec.Command(taskdtest.Build(t), append([]string{"token"}, args...)...)
	cmd.Env = []string{"DATABASE_URL=" + dbURL}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("taskd token %v: %v\n%s", args, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

func statusOf(t *testing.T, url, token string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// waitStatus polls until GET url with token answers want on every
// process, failing after within.
func waitStatus(t *testing.T, procs []*taskdtest.Process, path, token string, want int, within time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for _, p := range procs {
		for {
			got := statusOf(t, p.URL+path, token)
			if got == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: GET %s on %s = %d after %s, want %d", what, path, p.URL, got, within, want)
			}
			time.Sleep(50 * time.Millisecond) // polling interval
		}
	}
}

// TestAuthAcrossProcesses: a token created or revoked with `taskd token`
// takes effect within 5 s on every process, without a restart; neither
// the token nor its hash appears in any process's log, at debug level.
func TestAuthAcrossProcesses(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDB(t)
	env := []string{"TASKD_DB_MAX_CONNS=5", "TASKD_LOG_LEVEL=debug"}
	procs := []*taskdtest.Process{
		taskdtest.Start(t, taskdtest.Options{DatabaseURL: dbURL, Env: env}),
		taskdtest.Start(t, taskdtest.Options{DatabaseURL: dbURL, Env: env, Role: "api"}),
	}
	// A worker serves only health and /metrics, the latter behind admin.
	worker := taskdtest.Start(t, taskdtest.Options{DatabaseURL: dbURL, Env: env, Role: "worker"})
	waitStatus(t, procs, "/v1/tasks", "", http.StatusOK, time.Second, "auth off without tokens")
	waitStatus(t, []*taskdtest.Process{worker}, "/metrics", "", http.StatusOK, time.Second, "worker metrics, auth off")

	token := tokenCmd(t, dbURL, "create", "--name", "admin", "--scope", "admin")
	if !strings.HasPrefix(token, "tkd_") || len(token) < 4+43 {
		t.Fatalf("token %q: want tkd_ and at least 32 random bytes", token)
	}
	reader := tokenCmd(t, dbURL, "create", "--name", "reader", "--scope", "read")
	waitStatus(t, procs, "/v1/tasks", "", http.StatusUnauthorized, 5*time.Second, "auth on after token create")
	waitStatus(t, procs, "/v1/tasks", token, http.StatusOK, time.Second, "admin token")
	waitStatus(t, procs, "/metrics", reader, http.StatusForbidden, time.Second, "read token on /metrics")
	waitStatus(t, procs, "/riverui/", token, http.StatusOK, time.Second, "admin token on River UI")
	waitStatus(t, procs, "/riverui/api/jobs?state=available", "", http.StatusUnauthorized, time.Second, "River UI's API without a token")
	waitStatus(t, procs, "/riverui/api/jobs?state=available", reader, http.StatusForbidden, time.Second, "River UI's API, read token")
	waitStatus(t, procs, "/riverui/api/jobs?state=available", token, http.StatusOK, time.Second, "River UI's API, admin token")
	waitStatus(t, procs, "/v1/tasks", "tkd_wrong", http.StatusUnauthorized, time.Second, "unknown token")
	waitStatus(t, procs, "/healthz", "", http.StatusOK, time.Second, "health stays open")
	waitStatus(t, []*taskdtest.Process{worker}, "/metrics", "", http.StatusUnauthorized, 5*time.Second, "worker metrics, auth on")
	waitStatus(t, []*taskdtest.Process{worker}, "/metrics", reader, http.StatusForbidden, time.Second, "worker metrics, read token")
	waitStatus(t, []*taskdtest.Process{worker}, "/metrics", token, http.StatusOK, time.Second, "worker metrics, admin token")
	waitStatus(t, []*taskdtest.Process{worker}, "/healthz", "", http.StatusOK, time.Second, "worker health stays open")

	tokenCmd(t, dbURL, "revoke", "admin")
	waitStatus(t, procs, "/v1/tasks", token, http.StatusUnauthorized, 5*time.Second, "revoked token")
	waitStatus(t, procs, "/v1/tasks", reader, http.StatusOK, time.Second, "other token after a revocation")

	list := tokenCmd(t, dbURL, "list")
	sum := sha256.Sum256([]byte(token))
	secrets := []string{token, strings.TrimPrefix(token, "tkd_"), hex.EncodeToString(sum[:]),
		base64.StdEncoding.EncodeToString(sum[:]), base64.RawURLEncoding.EncodeToString(sum[:]), `\x` + hex.EncodeToString(sum[:])}
	procs = append(procs, worker)
	for _, p := range procs {
		_ = p.Stop()
	}
	for i, out := range []string{procs[0].Output(), procs[1].Output(), worker.Output(), list} {
		if !strings.Contains(out, "level") && i < 3 {
			t.Fatalf("process %d logged nothing?\n%s", i, out)
		}
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("output %d contains the token or its hash (%.8s…)", i, s)
			}
		}
	}
	if !strings.Contains(list, "admin") || !strings.Contains(list, "reader") {
		t.Errorf("token list:\n%s", list)
	}
}

// TestAuthStaysOnOffLoopback: a process listening off loopback (it could
// start because a token existed) does not open its API to everyone once
// the last token is revoked; one on loopback turns auth off, as without
// tokens from the start.
func TestAuthStaysOnOffLoopback(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDB(t)
	token := tokenCmd(t, dbURL, "create", "--name", "admin", "--scope", "admin")
	env := []string{"TASKD_DB_MAX_CONNS=5"}
	// 0.0.0.0 listens on every address; the test reaches it on loopback,
	// and the process knows it is reachable from elsewhere.
	exposed := taskdtest.Start(t, taskdtest.Options{DatabaseURL: dbURL, Env: env, Addr: "0.0.0.0:0"})
	local := taskdtest.Start(t, taskdtest.Options{DatabaseURL: dbURL, Env: env})
	both := []*taskdtest.Process{exposed, local}
	waitStatus(t, both, "/v1/tasks", token, http.StatusOK, 5*time.Second, "admin token")

	tokenCmd(t, dbURL, "revoke", "admin")
	waitStatus(t, []*taskdtest.Process{local}, "/v1/tasks", "", http.StatusOK, 5*time.Second, "loopback, no token left: auth off")
	waitStatus(t, []*taskdtest.Process{exposed}, "/v1/tasks", token, http.StatusUnauthorized, 5*time.Second, "off loopback, the revoked token")
	if got := statusOf(t, exposed.URL+"/v1/tasks", ""); got != http.StatusUnauthorized {
		t.Fatalf("off loopback with no token left, GET /v1/tasks without a token = %d, want 401", got)
	}
	if got := statusOf(t, exposed.URL+"/healthz", ""); got != http.StatusOK {
		t.Fatalf("health must stay open: %d", got)
	}
}
