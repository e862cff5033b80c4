package push

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestNewClient(t *testing.T) {
	t.Parallel()

	t.Run("Defaults", func(t *testing.T) {
		t.Parallel()
		c, err := NewClient(Config{Target: Target{URL: mustURL(t, "https://hooks.example.com/task")}})
		require.NoError(t, err)
		t.Cleanup(c.Close)
		require.Equal(t, TimeoutDefault, c.target.Timeout)
		require.Equal(t, MaxConnsDefault, c.transport.MaxConnsPerHost)
		require.Equal(t, MaxConnsDefault, c.transport.MaxIdleConnsPerHost)
		require.Nil(t, c.transport.Proxy, "proxy variables must be ignored")
		require.Equal(t, UserAgentDefault, c.headers.Get("User-Agent"))
		require.NotNil(t, c.now)
	})

	t.Run("Set", func(t *testing.T) {
		t.Parallel()
		c, err := NewClient(Config{
			Target:    Target{URL: mustURL(t, "http://hooks.example.com"), Timeout: TimeoutMax},
			MaxConns:  7,
			UserAgent: "taskd/1.2",
		})
		require.NoError(t, err)
		t.Cleanup(c.Close)
		require.Equal(t, TimeoutMax, c.target.Timeout)
		require.Equal(t, 7, c.transport.MaxConnsPerHost)
		require.Equal(t, "taskd/1.2", c.headers.Get("User-Agent"))
	})

	t.Run("Invalid", func(t *testing.T) {
		t.Parallel()
		target := func(raw string) Target { return Target{URL: mustURL(t, raw)} }
		withHeader := func(name, value string) Target {
			tg := target("https://hooks.example.com")
			tg.Headers = map[string]string{"Authorization": "Bearer x", name: value}
			return tg
		}
		for _, tt := range []struct {
			name    string
			cfg     Config
			field   string
			message string
		}{
			{"NoURL", Config{}, "Target.URL", "is required"},
			{"Scheme", Config{Target: target("ftp://hooks.example.com")}, "Target.URL", `must be http or https, not "ftp"`},
			{"NoScheme", Config{Target: target("hooks.example.com/task")}, "Target.URL", `not ""`},
			{"NoHost", Config{Target: target("http:///task")}, "Target.URL", "has no host"},
			{"OnlyPort", Config{Target: target("http://:8080/task")}, "Target.URL", "has no host"},
			{"TimeoutShort", Config{Target: Target{URL: mustURL(t, "https://h.example"), Timeout: 999 * time.Millisecond}}, "Target.Timeout", "must be between 1s and 30m0s"},
			{"TimeoutLong", Config{Target: Target{URL: mustURL(t, "https://h.example"), Timeout: TimeoutMax + time.Second}}, "Target.Timeout", "must be between"},
			{"TimeoutNegative", Config{Target: Target{URL: mustURL(t, "https://h.example"), Timeout: -time.Second}}, "Target.Timeout", "must be between"},
			{"MaxConns", Config{Target: target("https://h.example"), MaxConns: -1}, "MaxConns", "must not be negative"},
			{"HeaderWebhook", Config{Target: withHeader("webhook-id", "1")}, "Target.Headers", `"webhook-id" is set by taskd`},
			{"HeaderSignature", Config{Target: withHeader("Webhook-Signature", "v1,x")}, "Target.Headers", "is set by taskd"},
			{"HeaderTaskd", Config{Target: withHeader("taskd-attempt", "1")}, "Target.Headers", "is set by taskd"},
			{"HeaderContentType", Config{Target: withHeader("content-type", "text/plain")}, "Target.Headers", "is set by taskd"},
			{"HeaderHost", Config{Target: withHeader("Host", "other.example")}, "Target.Headers", "is set by taskd"},
			{"HeaderContentLength", Config{Target: withHeader("Content-Length", "1")}, "Target.Headers", "is set by taskd"},
			{"HeaderName", Config{Target: withHeader("X Bad", "1")}, "Target.Headers", `"X Bad" is not a valid header name`},
			{"HeaderEmptyName", Config{Target: withHeader("", "1")}, "Target.Headers", "not a valid header name"},
			{"HeaderValue", Config{Target: withHeader("X-Token", "a\r\nX-Injected: 1")}, "Target.Headers", "line break"},
			{"AllowPrivate", Config{Target: Target{URL: mustURL(t, "https://h.example"), AllowPrivate: []netip.Prefix{{}}}}, "Target.AllowPrivate", "invalid prefix"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				c, err := NewClient(tt.cfg)
				require.Nil(t, c)
				configErr, ok := errors.AsType[*ConfigError](err)
				require.True(t, ok, "%v", err)
				require.Equal(t, tt.field, configErr.Field)
				require.Contains(t, configErr.Message, tt.message)
				require.True(t, strings.HasPrefix(err.Error(), "push: "+tt.field+" "), err.Error())
				require.NotContains(t, err.Error(), "Bearer x", "the error repeats a header value")
			})
		}
	})
}

// delivery is what a test server saw of one request.
type delivery struct {
	method, path string
	header       http.Header
	body         []byte
}

// recorder serves 200 {"ok":true} and hands each request to the test.
func recorder(t *testing.T) (string, <-chan delivery) {
	ch := make(chan delivery, 10)
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		ch <- delivery{method: r.Method, path: r.URL.RequestURI(), header: r.Header.Clone(), body: body}
		_, _ = w.Write([]byte(`{"ok":true}`))
	})
	return srv.URL, ch
}

// verifyWebhook checks a request as a Standard Webhooks receiver does,
// written from the specification rather than from Sign: the secret is the
// base64 after "whsec_", the signed content is id "." timestamp "." body,
// the header holds space-separated "v1,<base64 HMAC-SHA256>" signatures
// and one matching is enough; the timestamp must be within five minutes.
func verifyWebhook(secret string, header http.Header, body []byte, now time.Time) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	id, ts, sigs := header.Get("webhook-id"), header.Get("webhook-timestamp"), header.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return errors.New("missing a webhook-* header")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return err
	}
	if d := now.Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return errors.New("timestamp too far from now")
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + string(body)))
	want := mac.Sum(nil)
	for _, sig := range strings.Fields(sigs) {
		version, encoded, ok := strings.Cut(sig, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(encoded)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no matching signature")
}

func TestDoRequest(t *testing.T) {
	t.Parallel()

	t.Run("Shape", func(t *testing.T) {
		t.Parallel()
		url, deliveries := recorder(t)
		secret, err := ParseSecret(vectorSecret)
		require.NoError(t, err)
		c := newTestClient(t, Config{Target: Target{
			URL:     mustURL(t, url+"/hooks/task?source=taskd"),
			Secret:  secret,
			Headers: map[string]string{"Authorization": "Bearer token", "x-tenant": "acme"},
		}})

		batchID, schedule := int64(7), "nightly"
		req := testRequest()
		req.BatchID, req.Schedule = &batchID, &schedule
		var ids, signatures []string
		for attempt := 1; attempt <= 2; attempt++ {
			req.Attempt = attempt
			o := c.Do(t.Context(), req)
			require.NoError(t, o.Err)
			require.JSONEq(t, `{"ok":true}`, string(o.Result))

			d := waitFor(t, deliveries, "the delivery")
			require.Equal(t, http.MethodPost, d.method)
			require.Equal(t, "/hooks/task?source=taskd", d.path)
			require.JSONEq(t, `{"id":42,"kind":"email","args":{"to":"a@example.com"},"attempt":`+strconv.Itoa(attempt)+`,"max_attempts":5,"queue":"default","batch_id":7,"after_batch":null,"schedule":"nightly"}`, string(d.body))

			h := d.header
			require.Equal(t, "application/json", h.Get("Content-Type"))
			require.Equal(t, "42", h.Get("webhook-id"))
			require.Equal(t, strconv.FormatInt(testNow.Unix(), 10), h.Get("webhook-timestamp"))
			require.Equal(t, "42", h.Get("Taskd-Task-Id"))
			require.Equal(t, strconv.Itoa(attempt), h.Get("Taskd-Attempt"))
			require.Equal(t, "5", h.Get("Taskd-Max-Attempts"))
			require.Equal(t, "email", h.Get("Taskd-Kind"))
			require.Equal(t, "taskd", h.Get("User-Agent"))
			require.Equal(t, "Bearer token", h.Get("Authorization"))
			require.Equal(t, "acme", h.Get("X-Tenant"))
			require.NoError(t, verifyWebhook(vectorSecret, h, d.body, testNow))

			// Tampering is detected, so the verifier can fail.
			require.Error(t, verifyWebhook(vectorSecret, h, append(d.body, ' '), testNow))
			require.Error(t, verifyWebhook("whsec_"+base64.StdEncoding.EncodeToString(make([]byte, 24)), h, d.body, testNow))

			ids = append(ids, h.Get("webhook-id"))
			signatures = append(signatures, h.Get("webhook-signature"))
		}
		require.Equal(t, ids[0], ids[1], "webhook-id must be the same on every attempt")
		require.NotEqual(t, signatures[0], signatures[1])
	})

	t.Run("NoBatchNoSecret", func(t *testing.T) {
		t.Parallel()
		url, deliveries := recorder(t)
		c := newTestClient(t, Config{Target: Target{URL: mustURL(t, url)}, UserAgent: "taskd/1.2"})
		req := testRequest()
		req.Args = nil
		require.NoError(t, c.Do(t.Context(), req).Err)

		d := waitFor(t, deliveries, "the delivery")
		require.JSONEq(t, `{"id":42,"kind":"email","args":null,"attempt":1,"max_attempts":5,"queue":"default","batch_id":null,"after_batch":null,"schedule":null}`, string(d.body))
		require.NotContains(t, d.header, "Webhook-Signature")
		require.Equal(t, "42", d.header.Get("webhook-id"))
		require.Equal(t, "taskd/1.2", d.header.Get("User-Agent"))
	})

	t.Run("RealClock", func(t *testing.T) {
		t.Parallel()
		url, deliveries := recorder(t)
		secret, err := ParseSecret(vectorSecret)
		require.NoError(t, err)
		c, err := NewClient(Config{Target: Target{URL: mustURL(t, url), Secret: secret, AllowPrivate: loopback}})
		require.NoError(t, err)
		t.Cleanup(c.Close)
		require.NoError(t, c.Do(t.Context(), testRequest()).Err)
		d := waitFor(t, deliveries, "the delivery")
		require.NoError(t, verifyWebhook(vectorSecret, d.header, d.body, time.Now()))
	})

	t.Run("UserAgentHeader", func(t *testing.T) {
		t.Parallel()
		url, deliveries := recorder(t)
		c := newTestClient(t, Config{
			Target:    Target{URL: mustURL(t, url), Headers: map[string]string{"user-agent": "acme-hooks"}},
			UserAgent: "taskd/1.2",
		})
		require.NoError(t, c.Do(t.Context(), testRequest()).Err)
		require.Equal(t, "acme-hooks", waitFor(t, deliveries, "the delivery").header.Get("User-Agent"))
	})

	t.Run("ArgsNotJSON", func(t *testing.T) {
		t.Parallel()
		url, deliveries := recorder(t)
		c := newTestClient(t, Config{Target: Target{URL: mustURL(t, url)}})
		req := testRequest()
		req.Args = []byte(`{not json`)
		o := c.Do(t.Context(), req)
		require.ErrorContains(t, o.Err, "push: encoding the request")
		require.True(t, o.Permanent)
		require.Empty(t, deliveries)
	})
}
