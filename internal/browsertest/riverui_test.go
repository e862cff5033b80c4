package browsertest_test

// River UI, mounted by taskd under /riverui/, opened in headless Chromium:
// a task submitted through the API is listed, opens, and shows its args
// and output; without credentials the UI's data does not load (River UI
// is behind the admin scope).

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/internal/taskdtest"
)

func TestMain(m *testing.M) { taskdtest.Main(m) }

// browserTimeout bounds one browser session: Chromium's start, the page's
// load and every wait in it.
const browserTimeout = 60 * time.Second

// chromiumNames are the names Chromium's binary goes by: Debian's package
// installs /usr/bin/chromium.
var chromiumNames = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// findChromium returns the path of a Chromium binary, or skips t saying
// why: .ci/run installs Debian's chromium package when it is missing, so
// a skip means that could not be done here.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range chromiumNames {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	t.Skipf("no Chromium found (looked for %s on PATH): .ci/run installs it (apt-get install -y chromium)", strings.Join(chromiumNames, ", "))
	return ""
}

// credentials are what the browser sends: HTTP Basic with an admin token
// as the password, which is how a person logs in to River UI when access
// control is on. The zero value sends none.
type credentials struct {
	User, Token string
}

func (c credentials) none() bool { return c.Token == "" }

// header is the Authorization header of c.
func (c credentials) header() string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(c.User+":"+c.Token))
}

// browser starts a fresh headless Chromium (its own user data directory,
// no outside network) that sends creds with every request, and returns its
// context, cancelled when the test ends.
func browser(t *testing.T, chromium string, creds credentials) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
	}
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	t.Cleanup(cancel)
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelCtx := chromedp.NewContext(ctx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancelCtx)
	_, err := chromedp.Call(ctx, network.Enable, network.EnableParams{})
	require.NoError(t, err, "starting Chromium %s", chromium)
	cancelAuthPrompts(t, ctx)
	if !creds.none() {
		_, err = chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
			Headers: network.Headers{"Authorization": creds.header()},
		})
		require.NoError(t, err)
	}
	return ctx
}

// cancelAuthPrompts answers every HTTP authentication challenge of ctx's
// page as a person who has no credentials would, by cancelling the login
// prompt: headless Chromium would otherwise hold the request (a fetch
// never settles) or fail the navigation instead of showing the 401.
// Watching for challenges takes Fetch interception, so every other
// request is let through unchanged.
func cancelAuthPrompts(t *testing.T, ctx context.Context) {
	t.Helper()
	paused := chromedp.Events(ctx, fetch.RequestPaused)
	challenges := chromedp.Events(ctx, fetch.AuthRequired)
	go func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
		}
	}()
	go func() {
		for ev, err := range challenges {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(ctx, fetch.ContinueWithAuth, fetch.ContinueWithAuthParams{
				RequestID:             ev.RequestID,
				AuthChallengeResponse: &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseCancelAuth},
			})
		}
	}()
	handle := true
	_, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{HandleAuthRequests: &handle})
	require.NoError(t, err)
}

// screenshot saves a full-page screenshot of ctx's page as
// testdata/out/NAME.png and logs its path.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	dir, err := filepath.Abs(filepath.Join("testdata", "out"))
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	path := filepath.Join(dir, name+".png")
	require.NoError(t, os.WriteFile(path, png, 0o644))
	t.Logf("screenshot: %s", path)
}

// tokenPattern is what `taskd token create` prints once (issue 10: a
// recognisable tkd_ prefix).
var tokenPattern = regexp.MustCompile(`tkd_[A-Za-z0-9_-]{20,}`)

// adminCredentials creates an admin token with `taskd token create` on
// databaseURL and returns it as Basic credentials.
func adminCredentials(t *testing.T, databaseURL string) credentials {
	t.Helper()
	cmd := exec.Command(taskdtest.Build(t), "token", "create", "--name", "riverui-browser", "--scope", "admin")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "DATABASE_URL=" + databaseURL}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "taskd token create: %s", out)
	token := tokenPattern.Find(out)
	require.NotNil(t, token, "no tkd_ token in the output of taskd token create")
	return credentials{User: "admin", Token: string(token)}
}

// api makes one request of the HTTP API with creds as a Bearer token and
// decodes the JSON answer into out, failing t on any status but want.
func api(t *testing.T, creds credentials, method, url string, body any, want int, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if !creds.none() {
		req.Header.Set("Authorization", "Bearer "+creds.Token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, want, resp.StatusCode, "%s %s: %s", method, url, raw)
	if out != nil {
		require.NoError(t, json.Unmarshal(raw, out), "%s", raw)
	}
}

// uiAPIStatus is the status of GET /riverui/api/jobs without credentials.
func uiAPIStatus(t *testing.T, base string) int {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(base + "/riverui/api/jobs?state=completed")
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

func TestRiverUIInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts taskd and Chromium")
	}
	chromium := findChromium(t)
	dbURL := pgtest.NewDB(t)
	creds := adminCredentials(t, dbURL)
	p := taskdtest.Start(t, taskdtest.Options{DatabaseURL: dbURL, Env: []string{"TASKD_DB_MAX_CONNS=5"}})

	// A task submitted through the API, waited for until River completed
	// it, so that the UI has its args and its output to show.
	var task struct {
		ID     int64           `json:"id"`
		State  string          `json:"state"`
		Result json.RawMessage `json:"result"`
	}
	api(t, creds, http.MethodPost, p.URL+"/v1/tasks", map[string]any{"kind": "double", "args": map[string]any{"value": 21}}, http.StatusCreated, &task)
	id := strconv.FormatInt(task.ID, 10)
	deadline := time.Now().Add(30 * time.Second)
	for task.State != "completed" {
		require.True(t, time.Now().Before(deadline), "task %s is still %s after 30s", id, task.State)
		time.Sleep(50 * time.Millisecond)
		api(t, creds, http.MethodGet, p.URL+"/v1/tasks/"+id, nil, http.StatusOK, &task)
	}
	require.JSONEq(t, `{"result": 42}`, string(task.Result))

	t.Run("with credentials it lists the task, opens it, and shows its args and output", func(t *testing.T) {
		ctx := browser(t, chromium, creds)
		link := chromedp.CSS(`a[href$="/riverui/jobs/` + id + `"]`)
		step(t, ctx, "riverui-list", chromedp.Navigate(p.URL+"/riverui/jobs?state=completed"), chromedp.WaitVisible(link))
		list := pageText(t, ctx)
		require.Contains(t, list, "double", "the list names the task's kind")
		require.Contains(t, list, `{"value":21}`, "the list shows the task's args")
		screenshot(t, ctx, "riverui-list")

		// River UI shows the args as JSON and the output (which River keeps
		// in the job's metadata under "output") folded: unfold it.
		output := chromedp.Search(`//div[@role="button"][@aria-expanded="false"][span[text()='"output"']]`)
		step(t, ctx, "riverui-job", chromedp.Click(link), chromedp.WaitVisible(output))
		require.Equal(t, `{"value":21}`, section(t, ctx, "Args"))
		step(t, ctx, "riverui-job", chromedp.Click(output), chromedp.WaitVisible(chromedp.Search(`//span[text()='"result"']`)))
		require.Contains(t, section(t, ctx, "Metadata"), `"output":{"result":42}`)
		require.Contains(t, pageText(t, ctx), "ID: "+id)
		screenshot(t, ctx, "riverui-job")
	})

	t.Run("without credentials the UI's data does not load", func(t *testing.T) {
		// Refused outside the browser too: a 200 here is River UI open to
		// anyone, a failure (it once skipped, before access control).
		require.Equal(t, http.StatusUnauthorized, uiAPIStatus(t, p.URL), "GET /riverui/api/jobs without credentials")
		ctx := browser(t, chromium, credentials{})
		step(t, ctx, "riverui-no-credentials", chromedp.Navigate(p.URL+"/riverui/jobs?state=completed"))
		// Whatever the page shows (the 401 itself, or River UI's shell),
		// the API it reads its data from refuses this browser...
		status := evaluate[int](t, ctx, `fetch("/riverui/api/jobs?state=completed").then(r => r.status)`)
		require.Contains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, status, "GET /riverui/api/jobs from the browser")
		// ...and the task's args are nowhere on it.
		require.NotContains(t, pageText(t, ctx), `{"value":21}`)
		screenshot(t, ctx, "riverui-no-credentials")
	})
}

// stepTimeout bounds one step of a page, so that a failed wait leaves time
// for a screenshot of what the page showed instead.
const stepTimeout = 20 * time.Second

// step runs actions on ctx's page within stepTimeout; on failure it saves a
// screenshot NAME-failed and logs the page's text before failing t.
func step(t *testing.T, ctx context.Context, name string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		screenshot(t, ctx, name+"-failed")
		if text, terr := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body"))); terr == nil {
			t.Logf("the page showed:\n%s", text)
		}
		t.Fatalf("%s: %v", name, err)
	}
}

// evaluate runs a JavaScript expression in ctx's page (awaiting a promise)
// and returns its value.
func evaluate[T any](t *testing.T, ctx context.Context, expression string) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(sctx, chromedp.Evaluate[T](expression, chromedp.EvalAwaitPromise))
	require.NoError(t, err, "evaluating %s", expression)
	return v
}

// pageText is the text of the page's body.
func pageText(t *testing.T, ctx context.Context) string {
	t.Helper()
	return evaluate[string](t, ctx, `document.body.innerText`)
}

// section is the text of the job detail's field called name (a dt and its
// dd), without whitespace: River UI spreads JSON over many elements.
func section(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	js := fmt.Sprintf(`(() => {
		const dt = [...document.querySelectorAll("dt")].find(e => e.textContent.trim() === %q);
		return dt && dt.nextElementSibling ? dt.nextElementSibling.textContent : "";
	})()`, name)
	text := evaluate[string](t, ctx, js)
	return strings.Join(strings.Fields(strings.ReplaceAll(text, "\u00a0", " ")), "")
}
