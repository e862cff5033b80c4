// Package push delivers tasks of kinds that run over HTTP ("run: http"):
// one signed POST per attempt to the operator's endpoint, through a dialer
// that refuses private and internal addresses unless the operator allowed
// them, and the classification of the response into an attempt's outcome.
// It knows nothing of River; internal/jobs adapts it to a River worker.
//
// Each attempt is a POST of {"id", "kind", "args", "attempt",
// "max_attempts", "queue", "batch_id", "after_batch",
// "schedule"} with the Standard
// Webhooks headers (webhook-id is the task's ID, the same on every
// attempt, so that a receiver can de-duplicate; webhook-signature only
// when the target has a secret) and Taskd-Task-Id, Taskd-Attempt,
// Taskd-Max-Attempts and Taskd-Kind. A 2xx response completes the task
// with its body as the result; 408, 425, 429, 5xx, redirects and network
// errors fail the attempt; any other 4xx discards the task (see Outcome).
package push

import (
	"net/netip"
	"net/url"
	"time"
)

// Target is where and how one kind's tasks are pushed. It comes only from
// the operator's configuration file, never from a request.
type Target struct {
	// URL is the endpoint (http or https) every attempt is POSTed to.
	URL *url.URL
	// Headers are added to every request (after expansion of ${ENV}).
	// They may set User-Agent, but not the headers taskd sets itself
	// (Content-Type, webhook-*, Taskd-*, and Host, Content-Length,
	// Transfer-Encoding and Connection): NewClient refuses those, since a
	// receiver must be able to trust them.
	Headers map[string]string
	// Secret is the decoded Standard Webhooks secret (the bytes after
	// "whsec_"); nil sends no signature.
	Secret []byte
	// Timeout bounds one attempt's request, response body included.
	// Defaults to TimeoutDefault; between TimeoutMin and TimeoutMax.
	Timeout time.Duration
	// AllowPrivate lists the addresses this target may reach although they
	// are loopback, private or otherwise internal. It allows addresses,
	// not host names: every address connected to is checked, whatever name
	// it was resolved from (see Refused).
	AllowPrivate []netip.Prefix
}
