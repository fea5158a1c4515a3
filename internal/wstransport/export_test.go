package wstransport

// WithProbes returns opts whose connections report, with their lock held,
// the bytes they have queued and not written after each addition (queued)
// and the operations waiting to start after each addition (waiting). The
// functions must not call into the transport.
func WithProbes(opts Options, queued, waiting func(n int)) Options {
	opts.probes = &probes{queued: queued, waiting: waiting}
	return opts
}

// MaxWaiting is how many operations of a connection may wait to start.
const MaxWaiting = maxWaiting

// MaxPongPayload is the largest ping payload a pong echoes.
const MaxPongPayload = maxPongPayload
