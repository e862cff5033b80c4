package jobs

// stackGrowBytes is the frame growStack puts on the stack. River runs
// each job on a goroutine of its own, whose stack starts at the runtime's
// average; taskd's job path (River's executor, its middleware chain and
// taskd's middlewares inside it) needs more, and the runtime grew the
// stack deep in that path, copying it and adjusting every frame on it:
// about a tenth of taskd's CPU in scenario 1 of docs/PERFORMANCE.md. A
// frame of this size while the stack is still shallow makes the runtime
// grow it there instead, with fewer frames to adjust. Measured in
// scenario 1's CPU profile: stack growth from 12 % of taskd's CPU to 6 %
// with 8 KiB; 16 and 32 KiB did worse (8 and 9 %: bigger stacks, and
// grown where they did not need to be). CockroachDB's growstack package
// does the same for its storage paths.
const stackGrowBytes = 8 << 10

// growStack grows the calling goroutine's stack by stackGrowBytes of
// headroom, once, at the depth it is called from.
//
//go:noinline
func growStack() {
	var buf [stackGrowBytes]byte
	useStack(buf[:])
}

// useStack keeps growStack's frame from being optimized away.
//
//go:noinline
func useStack([]byte) {}
