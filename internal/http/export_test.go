package http

import "net/http"

// BodyBytesInFlight reports the bytes of request bodies that h, made by
// NewServer, holds against MaxBodyBytesInFlight, so that tests can wait for
// a body to be in flight instead of guessing.
func BodyBytesInFlight(h http.Handler) int64 { return h.(*server).budget.inUse() }
