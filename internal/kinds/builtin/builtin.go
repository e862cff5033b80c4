// Package builtin holds taskd's built-in kinds, run by Go workers in every
// process: "double" (the FastAPI article's example), "sleep" (a stand-in
// for I/O-bound work), "fail" (for trying retries) and "cpu" (CPU-bound
// work on its own queue).
package builtin

import "github.com/taskd/taskd/internal/kinds"

// Kinds returns the built-in kinds. Adding one is one line here.
func Kinds() []kinds.Kind {
	return append([]kinds.Kind{cpuKind, doubleKind, failKind, sleepKind}, chaosKinds...)
}

// chaosKinds are the fault suite's kinds, compiled in only with the build
// tag "chaos" (chaos.go): never in the shipped binary.
var chaosKinds []kinds.Kind

// Registry returns a registry of the built-in kinds.
func Registry() *kinds.Registry {
	r, err := kinds.NewRegistry(Kinds()...)
	if err != nil {
		panic(err) // the built-ins are fixed; TestRegistry checks them
	}
	return r
}
